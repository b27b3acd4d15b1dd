"""benchmarks/run.py --quick end to end, so the benchmark cannot rot: the report's fields,
and numbers that must hold whatever the machine."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("monai")
pytest.importorskip("matplotlib")
pytest.importorskip("onnxconverter_common")

ROOT = Path(__file__).resolve().parents[2]


def test_quick_benchmark_writes_a_complete_report(tmp_path):
    out = tmp_path / "results"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--out", str(out),
                           "--work", str(tmp_path / "work")], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (report_path,) = out.glob("*.json")
    report = json.loads(report_path.read_text())
    assert report_path.with_suffix(".md").is_file() and report_path.with_suffix(".png").stat().st_size > 1000
    assert set(report["pipelines"]) == {"ours-onnxruntime-all-slices", "ours-onnxruntime", "monai", "nnunet-style"}
    assert report["matmul_peak"]["gflops"] > 0 and report["machine"]["cores"] >= 1
    for name, p in report["pipelines"].items():
        assert set(p["stage_seconds"]) == {"read", "preprocess", "2d", "3d", "fusion", "write"}
        assert 0 < p["end_to_end_p50"] <= p["end_to_end_p95"]
        assert p["peak_rss_mb"] > 50 and p["studies_per_minute_one_at_a_time"] > 0
        assert len(p["dice_vs_reference"]) == 2 and not p["comparison_void"], (name, p["dice_vs_reference"])
        # FLOPs executed: what each ran, times the per-item count of the networks
        expected = p["slices_run_mean"] * report["flops_per_item"]["2d_per_slice"] / 1e9
        assert p["gflop_2d"] == pytest.approx(expected)
        outside = p["end_to_end_mean"] - p["stage_seconds"]["2d"] - p["stage_seconds"]["3d"]
        floor = (p["gflop_2d"] + p["gflop_3d"]) / report["matmul_peak"]["gflops"] + outside
        assert p["floor_seconds"] == pytest.approx(floor)
    ours, monai = report["pipelines"]["ours-onnxruntime"], report["pipelines"]["monai"]
    assert ours["studies_per_minute_pipelined"] > 0 and ours["pipelined_failed"] == 0
    assert ours["slices_run_mean"] < monai["slices_run_mean"]  # air skipped; the peers run every slice
    reference = report["pipelines"]["ours-onnxruntime-all-slices"]
    assert reference["slices_run_mean"] == monai["slices_run_mean"]
    assert all(d is None or d >= 0.995 for d in ours["dice_on_body_slices"])
    assert "vs monai" in report_path.with_suffix(".md").read_text()
