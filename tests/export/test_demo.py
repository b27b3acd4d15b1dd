"""l2s-demo end to end with one phantom study."""

import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxconverter_common")

from l2s_export.demo import main  # noqa: E402


def test_demo_runs_phantoms_through_the_whole_pipeline(tmp_path, capsys):
    assert main(["--out", str(tmp_path), "-n", "1"]) == 0
    out = capsys.readouterr().out
    assert "[3/3] l2s-infer" in out and "positive-only: Dice" in out
    report = json.loads((tmp_path / "predictions" / "report.json").read_text())
    (study,) = report["studies"]
    assert study["status"] == "ok" and study["metrics"]["gt_voxels"] > 0  # study 0 of the set has lesions
    assert (tmp_path / "predictions" / "qc").is_dir() and (tmp_path / "engines" / "manifest.json").is_file()
