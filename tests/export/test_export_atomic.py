"""l2s-export never leaves a half-built or mixed engine directory, and refuses bad weights by name.

The engine directory is built beside the target and swapped in whole (``l2s_export.staging``);
a failure (an injected parity failure, an interrupt, ``kill -9``) leaves the old engine byte
for byte; bad weights folders are one ``l2s-export: ...`` line and exit status 2.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("onnx")

from l2s_engine.errors import OutputError  # noqa: E402
from l2s_engine.manifest import read_manifest  # noqa: E402
from l2s_export import staging  # noqa: E402
from l2s_export.checks import check_weights_dirs  # noqa: E402
from l2s_export.cli import main  # noqa: E402
from l2s_export.pipeline import export_programs  # noqa: E402

DEMO = Path(__file__).resolve().parents[2] / "weights" / "demo"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def weights(tmp_path) -> Path:
    """A copy of the committed demo weights (lite preset) to damage at will."""
    folder = tmp_path / "weights"
    folder.mkdir()
    for name in ("config.json", "loc2d.safetensors", "seg3d.safetensors"):
        shutil.copy(DEMO / name, folder / name)
    return folder


def old_engine(target: Path) -> dict:
    """An earlier engine directory at ``target`` (files a new export does not write); its snapshot."""
    target.mkdir(parents=True)
    (target / "manifest.json").write_text(json.dumps({"schema_version": 1, "files": [], "note": "old"}))
    (target / "loc2d_fold1.onnx").write_bytes(b"old fold 1 graph")
    (target / "seg3d_fp16.plan").write_bytes(bytes(range(256)))
    return snapshot(target)


def snapshot(folder: Path) -> dict:
    """Every file below ``folder``: relative path -> bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def siblings(target: Path) -> list[str]:
    """The hidden staged folders beside ``target``."""
    return sorted(p.name for p in target.parent.iterdir() if p.name.startswith(staging.stage_prefix(target)))


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("l2s-export: ") and "\n" not in err and "Traceback" not in err, err
    return err


# ---- a failed export changes nothing ---------------------------------------------------------


def test_a_failed_parity_check_leaves_the_old_engine_byte_identical(weights, tmp_path, monkeypatch, capsys):
    target = tmp_path / "engine"
    before = old_engine(target)
    # ONNX Runtime "disagrees" with PyTorch on the first graph: the export must stop there
    monkeypatch.setattr("l2s_export.pipeline.max_probability_difference", lambda *a, **k: 0.5)
    assert main([str(weights), "-o", str(target), "--no-tensorrt"]) == 2
    err = one_error_line(capsys)
    assert "loc2d.onnx: ONNX Runtime differs from PyTorch by 5.00e-01" in err
    assert snapshot(target) == before
    assert siblings(target) == []  # no half-built folder left behind


def test_an_interrupt_after_the_programs_leaves_the_old_engine_and_no_staged_folder(weights, tmp_path, monkeypatch):
    target = tmp_path / "engine"
    before = old_engine(target)
    staged = []

    def interrupted(out, *args):
        staged.append(sorted(p.name for p in out.iterdir()))
        raise KeyboardInterrupt

    monkeypatch.setattr("l2s_export.pipeline.write_manifest", interrupted)
    with pytest.raises(KeyboardInterrupt):
        export_programs([weights], check_weights_dirs([weights]), target)
    assert staged == [["loc2d.pt2", "seg3d.pt2"]]  # the programs were built (elsewhere) ...
    assert snapshot(target) == before                 # ... and never reached the target
    assert siblings(target) == []


# ---- kill -9, then a successful export -------------------------------------------------------


def test_kill_9_mid_export_keeps_the_old_engine_and_the_next_export_cleans_up(weights, tmp_path):
    target = tmp_path / "engine"
    before = old_engine(target)
    code = "import sys; from l2s_export.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.Popen([sys.executable, "-c", code, str(weights), "-o", str(target), "--programs-only"],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while not any((tmp_path / name / "loc2d.pt2").exists() for name in siblings(target)):
            assert proc.poll() is None, "the export ended before it could be killed"
            assert time.monotonic() < deadline, "the export wrote no program in 180 s"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert snapshot(target) == before
    (left,) = siblings(target)  # recognisable: the target's name and the killed export's pid
    assert left.startswith(f".engine.l2s-export-{proc.pid}-")

    export_programs([weights], check_weights_dirs([weights]), target)
    assert siblings(target) == []  # the killed export's folder is gone
    # the whole folder was replaced: nothing of the old engine is left
    assert sorted(snapshot(target)) == ["loc2d.pt2", "manifest.json", "seg3d.pt2"]
    assert sorted(f.path for f in read_manifest(target).files) == ["loc2d.pt2", "seg3d.pt2"]


def test_a_running_exports_staged_folder_is_left_alone(tmp_path):
    target = tmp_path / "engine"
    mine = tmp_path / f"{staging.stage_prefix(target)}{os.getpid()}-0000"  # this process: running
    mine.mkdir()
    assert staging.clean_stale(target) == [] and mine.is_dir()


# ---- the swap without RENAME_EXCHANGE --------------------------------------------------------


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_the_two_rename_swap_and_its_recovery(tmp_path, monkeypatch):
    monkeypatch.setattr(staging, "_exchange", lambda a, b: False)  # as on a system without renameat2
    target = tmp_path / "engine"
    old_engine(target)
    work = tmp_path / f"{staging.stage_prefix(target)}{os.getpid()}-0001"
    work.mkdir()
    (work / "manifest.json").write_text("{}")
    staging.swap_in(work, target)
    assert sorted(snapshot(target)) == ["manifest.json"] and siblings(target) == []

    # killed between its two renames: the old engine renamed aside, no target
    before = snapshot(target)
    aside = tmp_path / f"{staging.stage_prefix(target)}{_dead_pid()}-0002{staging.OLD_SUFFIX}"
    target.rename(aside)
    assert staging.clean_stale(target) == [aside]
    assert snapshot(target) == before and siblings(target) == []  # put back, not deleted


def test_a_failed_second_rename_puts_the_old_engine_back(tmp_path, monkeypatch):
    monkeypatch.setattr(staging, "_exchange", lambda a, b: False)
    target = tmp_path / "engine"
    before = old_engine(target)
    work = tmp_path / f"{staging.stage_prefix(target)}{os.getpid()}-0003"
    work.mkdir()
    real_rename = os.rename

    def failing(src, dst):
        if Path(src) == work:
            raise OSError(28, "No space left on device")
        real_rename(src, dst)

    monkeypatch.setattr(staging.os, "rename", failing)
    with pytest.raises(OSError):
        staging.swap_in(work, target)
    assert snapshot(target) == before and work.is_dir()


# ---- targets that are not engine directories -------------------------------------------------


def test_a_folder_of_user_files_is_refused_not_replaced(weights, tmp_path, capsys):
    target = tmp_path / "results"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    assert main([str(weights), "-o", str(target), "--programs-only"]) == 2
    err = one_error_line(capsys)
    assert "results: holds 1 file(s) (notes.txt) but no manifest.json" in err and "choose an empty or new folder" in err
    assert snapshot(target) == {"notes.txt": b"mine"} and siblings(target) == []
    with pytest.raises(staging.NotAnEngineDirError):
        staging.check_target(target)
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="is a file"):
        staging.check_target(tmp_path / "file")


# ---- bad weights folders: one named error each -----------------------------------------------


def _edit_spec(weights: Path, change) -> None:
    data = json.loads((weights / "config.json").read_text())
    change(data["spec"])
    (weights / "config.json").write_text(json.dumps(data))


def _nan_weight(weights: Path) -> None:
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(weights / "seg3d.safetensors"))
    name = sorted(k for k, v in tensors.items() if v.is_floating_point())[0]
    tensors[name].view(-1)[0] = float("nan")
    save_file(tensors, str(weights / "seg3d.safetensors"))


BAD_WEIGHTS = {
    "config missing": (lambda w: (w / "config.json").unlink(), "missing config.json"),
    "config not JSON": (lambda w: (w / "config.json").write_text('{"spec": '), "config.json: not JSON"),
    "config a list": (lambda w: (w / "config.json").write_text("[1, 2]"), "config.json: a JSON list, not an object"),
    "spec not an object": (lambda w: (w / "config.json").write_text('{"spec": 3}'), "config.json: no 'spec' object"),
    "spec invalid": (lambda w: _edit_spec(w, lambda s: s["seg3d"].update(norm="group")),
                     "config.json: seg3d.norm must be instance, layer or batch, got 'group'"),
    "spec field of the wrong type": (lambda w: _edit_spec(w, lambda s: s["seg3d"].update(filters="eight")),
                                     "config.json: its spec cannot build the seg3d network"),
    "3D channels differ": (lambda w: _edit_spec(w, lambda s: s["seg3d"].update(filters=16)),
                           "seg3d.safetensors: tensor 'down.0.0.weight' has shape (8, 2, 3, 3, 3), the network "
                           "config.json's spec builds has (16, 2, 3, 3, 3)"),
    "2D input slices differ": (lambda w: _edit_spec(w, lambda s: s["loc2d"].update(in_slices=3)),
                               "loc2d.safetensors: tensor"),
    "truncated": (lambda w: (w / "seg3d.safetensors").write_bytes((w / "seg3d.safetensors").read_bytes()[:100000]),
                  "seg3d.safetensors: not a whole safetensors file (truncated or corrupt"),
    "corrupt header": (lambda w: (w / "loc2d.safetensors").write_bytes(b"\xff" * 64),
                       "loc2d.safetensors: not a whole safetensors file (truncated or corrupt"),
    "missing 2D weights": (lambda w: (w / "loc2d.safetensors").unlink(), "missing loc2d.safetensors"),
    "missing 3D weights": (lambda w: (w / "seg3d.safetensors").unlink(), "missing seg3d.safetensors"),
    "NaN weight": (_nan_weight, "seg3d.safetensors: tensor 'down.0.0.weight' holds NaN"),
}


@pytest.mark.parametrize("case", sorted(BAD_WEIGHTS))
def test_each_bad_weights_folder_is_one_named_error(weights, tmp_path, capsys, case):
    damage, words = BAD_WEIGHTS[case]
    damage(weights)
    target = tmp_path / "engine"
    assert main([str(weights), "-o", str(target), "--programs-only"]) == 2
    err = one_error_line(capsys)
    assert words in err, err
    assert str(weights) in err
    assert not target.exists() and siblings(target) == []
