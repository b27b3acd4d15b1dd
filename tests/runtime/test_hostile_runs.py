"""l2s-infer as a hostile user runs it: two studies with one id, changed inputs, a full disk, an
unwritable output folder, a killed run's leftovers, hidden folders, a label off the grid."""

import json
import logging
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

pytest.importorskip("onnx")

from l2s_engine import run_report  # noqa: E402
from l2s_engine.cli import infer_main  # noqa: E402
from l2s_engine.errors import OutputError  # noqa: E402
from l2s_engine.io import images as images_module  # noqa: E402
from l2s_engine.io import load_label  # noqa: E402
from l2s_engine.phantoms import make_phantom  # noqa: E402
from l2s_engine.phantoms.files import write_study  # noqa: E402
from l2s_engine.pipeline import HostEngine  # noqa: E402

from .engines import fast_engine  # noqa: E402


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    return fast_engine(tmp_path_factory.mktemp("fast-engine"), spacing="tiny")


def _study(root: Path, index: int) -> Path:
    """Phantom ``index`` (seed 3; even indices have lesions) written as ``root``, an autoPET folder."""
    folder = write_study(make_phantom(index, seed=3, size="tiny"), root.parent / "tmp-write", "autopet")
    root.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(folder), str(root))
    shutil.rmtree(root.parent / "tmp-write")
    return root


def _run(engine, inputs, out, *extra) -> int:
    return infer_main(["--engine", str(engine), *map(str, inputs), "-o", str(out), "-q", *extra])


def _report(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


def _studies(out: Path) -> dict:
    return {s["case_id"]: s for s in _report(out)["studies"]}


def _mask(path: Path) -> np.ndarray:
    return load_label(path)[0]


def test_two_studies_with_one_id_never_share_a_mask(engine, tmp_path, caplog):
    a, b = _study(tmp_path / "siteA" / "study", 0), _study(tmp_path / "siteB" / "study", 2)
    alone = tmp_path / "b-alone"
    assert _run(engine, [b], alone) == 0
    b_mask = _mask(alone / "study.nii.gz")
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING):
        assert _run(engine, [tmp_path / "siteA", tmp_path / "siteB"], out) == 0
    assert any(str(a) in r.message and str(b) in r.message and "study-2" in r.message for r in caplog.records)
    studies = _studies(out)
    assert studies["study"]["source"] == str(a) and studies["study-2"]["source"] == str(b)
    np.testing.assert_array_equal(_mask(out / "study-2.nii.gz"), b_mask)
    assert not np.array_equal(_mask(out / "study.nii.gz"), b_mask)  # the two phantoms differ
    # siteA goes away: siteB's study is now "study", whose file holds siteA's mask. It is redone.
    shutil.rmtree(tmp_path / "siteA")
    assert _run(engine, [tmp_path / "siteB"], out) == 0
    assert _studies(out)["study"]["status"] == "ok"
    np.testing.assert_array_equal(_mask(out / "study.nii.gz"), b_mask)
    record = json.loads((out / "provenance" / "study.json").read_text())
    assert record["source"] == str(b.resolve())


def test_skipped_only_when_inputs_engine_options_and_outputs_match(engine, tmp_path):
    folder = _study(tmp_path / "in" / "s", 0)
    out = tmp_path / "out"
    assert _run(engine, [folder], out) == 0
    assert _run(engine, [folder], out) == 0
    assert _studies(out)["s"]["status"] == "skipped"
    # another threshold changes the mask: redone
    assert _run(engine, [folder], out, "--low-threshold", "0.2") == 0
    assert _studies(out)["s"]["status"] == "ok"
    assert _run(engine, [folder], out, "--low-threshold", "0.2") == 0
    assert _studies(out)["s"]["status"] == "skipped"
    # the mask replaced by hand (another file of the same name): redone
    mask = out / "s.nii.gz"
    good = mask.read_bytes()
    mask.write_bytes(good)
    assert _run(engine, [folder], out, "--low-threshold", "0.2") == 0
    assert _studies(out)["s"]["status"] == "ok"
    # an input rewritten (same name, other content): redone
    time.sleep(0.01)
    pet = sitk.ReadImage(str(folder / "SUV.nii.gz"))
    sitk.WriteImage(pet * 2.0, str(folder / "SUV.nii.gz"))
    assert _run(engine, [folder], out, "--low-threshold", "0.2") == 0
    assert _studies(out)["s"]["status"] == "ok"


def test_a_full_disk_fails_that_study_only_and_publishes_nothing(engine, tmp_path, monkeypatch, capsys):
    folders = [_study(tmp_path / "in" / name, i) for i, name in enumerate(("a", "b", "c"))]
    out = tmp_path / "out"
    real_write = images_module.sitk.WriteImage

    def disk_full_for_b(image, path, compress):
        real_write(image, path, compress)
        if Path(path).name.startswith(".b."):  # SimpleITK returns normally after a short write
            with open(path, "r+b") as f:
                f.truncate(100)

    monkeypatch.setattr(images_module.sitk, "WriteImage", disk_full_for_b)
    assert _run(engine, [tmp_path / "in"], out) == 1
    assert "FAILED b" in capsys.readouterr().err
    studies = _studies(out)
    assert [studies[k]["status"] for k in "abc"] == ["ok", "failed", "ok"]
    assert "incomplete" in studies["b"]["error"]
    assert not (out / "b.nii.gz").exists() and not (out / "provenance" / "b.json").exists()
    assert not [p for p in out.iterdir() if ".partial" in p.name]
    # the disk has room again: the rerun does b only
    monkeypatch.setattr(images_module.sitk, "WriteImage", real_write)
    assert _run(engine, [tmp_path / "in"], out) == 0
    assert [_studies(out)[k]["status"] for k in "abc"] == ["skipped", "ok", "skipped"]
    assert len(folders) == 3


def test_a_report_that_cannot_be_written_is_one_line_and_exit_1(engine, tmp_path, monkeypatch, capsys):
    folder = _study(tmp_path / "in" / "s", 1)

    def full(path, text):
        raise OutputError(f"{path}: cannot write it (No space left on device); free space")

    monkeypatch.setattr(run_report, "write_text_atomic", full)
    assert _run(engine, [folder], tmp_path / "out") == 1
    err = capsys.readouterr().err
    assert "l2s-infer: no report:" in err and "No space left on device" in err and "Traceback" not in err
    assert (tmp_path / "out" / "s.nii.gz").is_file()


def test_an_unusable_output_folder_is_refused_before_any_study(engine, tmp_path, monkeypatch, capsys):
    folder = _study(tmp_path / "in" / "s", 1)

    def never(*args, **kwargs):
        raise AssertionError("a study was computed before the output folder was checked")

    monkeypatch.setattr(HostEngine, "segment", never)
    (tmp_path / "file").write_text("not a folder")
    assert _run(engine, [folder], tmp_path / "file") == 2
    assert "is a file" in capsys.readouterr().err
    assert _run(engine, [folder], tmp_path / "file" / "below") == 2
    assert "not writable" in capsys.readouterr().err


def test_leftovers_of_a_killed_run_are_removed_and_its_outputs_redone(engine, tmp_path):
    folder = _study(tmp_path / "in" / "s", 0)
    out = tmp_path / "out"
    assert _run(engine, [folder], out) == 0
    # kill -9 while writing: a temporary file, and the mask replaced but no record of it yet
    stale = out / ".s.abc123.partial.nii.gz"
    stale.write_bytes(b"half a mask")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    (out / "provenance" / "s.json").unlink()
    assert _run(engine, [folder], out) == 0
    assert not stale.exists()
    assert _studies(out)["s"]["status"] == "ok"


def test_hidden_folders_are_named_and_counted(engine, tmp_path, capsys, caplog):
    _study(tmp_path / "in" / "visible", 1)
    hidden = _study(tmp_path / "in" / ".hidden", 3)
    with caplog.at_level(logging.WARNING):
        assert _run(engine, [tmp_path / "in"], tmp_path / "out") == 0
    assert "1 hidden folder(s) not searched" in capsys.readouterr().out
    assert any(str(hidden) in r.message and "hidden folder not searched" in r.message for r in caplog.records)
    assert _report(tmp_path / "out")["hidden_folders_not_searched"] == [str(hidden)]
    assert _run(engine, [hidden], tmp_path / "out2") == 0  # given as an input: searched
    assert (tmp_path / "out2" / "hidden.nii.gz").is_file()


def test_a_label_off_the_grid_costs_the_metrics_not_the_mask(engine, tmp_path):
    folder = _study(tmp_path / "in" / "s", 0)
    seg = sitk.ReadImage(str(folder / "SEG.nii.gz"))
    seg.SetSpacing([2 * v for v in seg.GetSpacing()])
    sitk.WriteImage(seg, str(folder / "SEG.nii.gz"))
    assert _run(engine, [folder], tmp_path / "out") == 0
    study = _studies(tmp_path / "out")["s"]
    assert study["status"] == "ok" and study["metrics"] is None
    assert "label not used" in study["warnings"][0] and "spacing" in study["warnings"][0]
    assert (tmp_path / "out" / "s.nii.gz").is_file()


def test_the_voxel_budget_fails_the_study_by_name(engine, tmp_path):
    folder = _study(tmp_path / "in" / "s", 1)
    assert _run(engine, [folder], tmp_path / "out", "--max-voxels", "1000") == 1
    assert "more than the limit of 1,000 (--max-voxels)" in _studies(tmp_path / "out")["s"]["error"]


def test_a_study_is_published_whole_or_not_at_all(engine, tmp_path, monkeypatch):
    folder = _study(tmp_path / "in" / "s", 0)
    out = tmp_path / "out"
    real_write = images_module.sitk.WriteImage

    def cue_fails(image, path, compress):
        if "_cue" in Path(path).name:
            raise RuntimeError("No space left on device")
        real_write(image, path, compress)

    monkeypatch.setattr(images_module.sitk, "WriteImage", cue_fails)
    assert _run(engine, [folder], out, "--save-probs") == 1
    assert _studies(out)["s"]["status"] == "failed"
    # the mask and the 3D map were written before the cue failed: withdrawn with it
    assert not (out / "s.nii.gz").exists() and not list((out / "probs").iterdir())
    assert not (out / "provenance" / "s.json").exists()
