"""l2s-infer end to end on a fast stand-in engine: outputs, failures, skipping, report, modes."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx")

from l2s_engine.cli import infer_main  # noqa: E402
from l2s_engine.io import load_label  # noqa: E402
from l2s_engine.qc import CUE_RGB  # noqa: E402
from l2s_engine.phantoms import make_phantom  # noqa: E402
from l2s_engine.phantoms.files import write_study  # noqa: E402

from .engines import fast_engine  # noqa: E402


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    return fast_engine(tmp_path_factory.mktemp("fast-engine"), spacing="tiny")  # the studies' spacing


def _studies(root: Path, n: int, size: str = "tiny", layout: str = "autopet", start: int = 0) -> list:
    return [write_study(make_phantom(i, seed=3, size=size), root, layout) for i in range(start, start + n)]


def _report(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


def test_bad_studies_are_reported_by_name_and_the_others_written(engine, tmp_path, capsys):
    good = _studies(tmp_path / "in", 2)
    bad = _studies(tmp_path / "in", 3, start=2)
    truncated = bad[0] / "SUV.nii.gz"
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    (bad[1] / "CTres.nii.gz").unlink()
    import SimpleITK as sitk

    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((2, 8, 8, 8), np.float32), isVector=False), str(bad[2] / "SUV.nii.gz"))
    out = tmp_path / "out"
    assert infer_main(["--engine", str(engine), str(tmp_path / "in"), "-o", str(out), "-q"]) == 1
    err = capsys.readouterr().err
    report = _report(out)
    status = {s["case_id"]: s for s in report["studies"]}
    ids = {folder: next(c for c in status if c.startswith(folder.parent.name)) for folder in good + bad}
    for folder in good:
        case = ids[folder]
        assert status[case]["status"] == "ok" and (out / f"{case}.nii.gz").is_file()
    for folder, why in zip(bad, ("truncated", "CTres", "4D")):
        case = ids[folder]
        assert status[case]["status"] == "failed" and why in status[case]["error"]
        assert f"FAILED {case}" in err
        assert not (out / f"{case}.nii.gz").exists()
    assert report["summary"]["failed"] == 3 and report["summary"]["ok"] == 2
    assert report["backend"]["cue"] == "on demand"


def test_masks_lie_on_the_pet_grid_and_report_has_timings_and_metrics(engine, tmp_path):
    import SimpleITK as sitk

    folders = _studies(tmp_path / "in", 2)
    out = tmp_path / "out"
    assert infer_main(["--engine", str(engine), str(tmp_path / "in"), "-o", str(out), "-q", "--qc", "--save-probs",
                       "--format", "mha"]) == 0
    report = _report(out)
    assert len(report["studies"]) == 2
    for study in report["studies"]:
        folder = next(f for f in folders if study["case_id"].startswith(f.parent.name))
        mask, grid = load_label(Path(study["outputs"]["mask"]))
        _, pet_grid = load_label(folder / "SUV.nii.gz")
        assert grid.same_grid(pet_grid) and study["outputs"]["mask"].endswith(".mha")
        assert set(study["timings"]) == {"read", "preprocess", "resample", "2d", "3d", "fusion", "readout", "write"}
        assert study["spacing"]["resampled"] is False  # the engine's spacing is the studies'
        assert study["metrics"]["gt_voxels"] == int(load_label(folder / "SEG.nii.gz")[0].sum())
        assert study["mask_voxels"] == int(mask.sum())
        assert Path(study["outputs"]["qc"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert Path(study["outputs"]["p3d"]).is_file() and Path(study["outputs"]["cue"]).is_file()
    assert set(report["summary"]["metrics"]) == {"positive-only", "all-cases"}
    assert report["backend"]["name"] == "onnxruntime" and report["backend"]["version"]
    assert report["backend"]["cue"] == "full"  # --save-probs writes the whole cue
    image = pytest.importorskip("PIL.Image")
    for study in report["studies"]:
        cue = sitk.GetArrayFromImage(sitk.ReadImage(study["outputs"]["cue"]))
        picture = np.asarray(image.open(study["outputs"]["qc"]))
        assert (cue > 0.5).any() and np.all(picture == CUE_RGB, axis=2).any()  # the cue computed everywhere: outlined
    assert infer_main(["--engine", str(engine), str(tmp_path / "in"), "-o", str(tmp_path / "demand"), "-q", "--qc"]) == 0
    for study in _report(tmp_path / "demand")["studies"]:  # a cue on demand is partial: no outline
        assert not np.all(np.asarray(image.open(study["outputs"]["qc"])) == CUE_RGB, axis=2).any()


def test_existing_outputs_are_skipped_unless_overwrite(engine, tmp_path):
    _studies(tmp_path / "in", 2)
    out = tmp_path / "out"
    args = ["--engine", str(engine), str(tmp_path / "in"), "-o", str(out), "-q"]
    assert infer_main(args) == 0
    first = sorted(out.glob("*.nii.gz"))
    stamps = [p.stat().st_mtime_ns for p in first]
    assert infer_main(args) == 0
    assert _report(out)["summary"]["skipped"] == 2
    assert [p.stat().st_mtime_ns for p in first] == stamps
    assert infer_main(args + ["--overwrite"]) == 0
    assert _report(out)["summary"]["ok"] == 2


def test_grand_challenge_mode(engine, tmp_path):
    (folder,) = _studies(tmp_path / "gc", 1, layout="grand-challenge")
    uuid = next((folder / "images" / "pet").glob("*.mha")).name
    out = tmp_path / "output"
    assert infer_main(["--engine", str(engine), "--grand-challenge", "--gc-input", str(folder),
                       "--gc-output", str(out), "-q"]) == 0
    assert (out / "images" / "automated-petct-lesion-segmentation" / uuid).is_file()


def test_usage_errors_exit_2(engine, tmp_path, capsys):
    assert infer_main(["--engine", str(tmp_path / "none"), str(tmp_path), "-o", str(tmp_path / "o")]) == 2
    assert "manifest" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert infer_main(["--engine", str(engine), str(tmp_path / "empty"), "-o", str(tmp_path / "o")]) == 2


def _peak(engine: Path, inputs: Path, out: Path) -> float:
    args = ["--engine", str(engine), str(inputs), "-o", str(out), "-q"]
    code = f"import sys; from l2s_engine.cli import infer_main; sys.exit(infer_main({args!r}))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return _report(out)["summary"]["peak_rss_mb"]


def test_memory_does_not_grow_with_the_number_of_studies(engine, tmp_path):
    _studies(tmp_path / "two", 2, size="small")
    _studies(tmp_path / "ten", 10, size="small")
    two, ten = _peak(engine, tmp_path / "two", tmp_path / "o2"), _peak(engine, tmp_path / "ten", tmp_path / "o10")
    # one small study's arrays are about 60 MiB: keeping them would add about 480 MiB for the
    # eight more. The peak itself moves with how the read-ahead overlaps a study's work (ten
    # studies: 331-363 MiB over four runs, two: 318.8 each time), so the margin is wider than that
    assert ten - two < 100, (two, ten)


def test_backend_auto_says_what_it_chose(engine, tmp_path, capsys):
    _studies(tmp_path / "in", 1)
    assert infer_main([str(tmp_path / "in"), "--engine", str(engine), "-o", str(tmp_path / "out"), "-q",
                       "--backend", "auto"]) == 0
    out = capsys.readouterr().out
    # the stand-in engine has ONNX graphs only: whatever the machine, the CPU backend, with the reasons
    assert "backend auto: onnxruntime on cpu (passed over: tensorrt: " in out and "; torch: " in out
    assert _report(tmp_path / "out")["backend"]["name"] == "onnxruntime"
