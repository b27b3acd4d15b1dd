"""benchmarks/run.py --quick end to end, so the benchmark cannot rot: the report's fields,
and numbers that must hold whatever the machine."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("monai")
pytest.importorskip("matplotlib")
pytest.importorskip("onnxconverter_common")

ROOT = Path(__file__).resolve().parents[2]


SAME_PLAN = {"ours-onnxruntime-all-slices", "ours-onnxruntime"}  # fp32, our windows and blending


def assert_mask_check(name: str, p: dict) -> None:
    """Both studies' masks were compared with the reference. Our fp32 pipelines run the same plan and
    must agree (Dice >= 0.995). The peers blend windows their own way (MONAI's Gaussian map, the
    nnU-Net-style one) and bf16 rounds: on these tiny studies the demo nets' masks are 1-5 voxels,
    where one voxel near p3d = 0.5 moves Dice below 0.995, so for them only the check's presence is
    required (the report marks such a comparison VOID)."""
    dices = p["dice_vs_reference"]
    assert len(dices) == 2 and all(d is None or 0.0 <= d <= 1.0 for d in dices), (name, dices)
    if name in SAME_PLAN:
        assert not p["comparison_void"], (name, dices)


def test_quick_benchmark_writes_a_complete_report(tmp_path):
    # the demo weights run at the `small` spacing: the tiny studies are resampled to it, so each
    # pipeline does a small study's work (577 s here with other test runs sharing the 2 cores)
    out = tmp_path / "results"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--out", str(out),
                           "--work", str(tmp_path / "work"), "--backends", "onnxruntime,openvino"],
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (report_path,) = out.glob("*.json")
    report = json.loads(report_path.read_text())
    assert report_path.with_suffix(".md").is_file() and report_path.with_suffix(".png").stat().st_size > 1000
    assert set(report["pipelines"]) == {"ours-onnxruntime-all-slices", "ours-onnxruntime", "ours-openvino", "monai",
                                        "nnunet-style"}
    assert report["matmul_peak"]["gflops"] > 0 and report["machine"]["cores"] >= 1
    peaks = report["matmul_peaks"]
    # a bf16 peak is measured exactly where the CPU has bf16 units (the precision openvino may run)
    assert ("bf16" in peaks) == (report["machine"]["bf16_unit"] != "none") and peaks["fp32"] == report["matmul_peak"]
    ov_networks = report["pipelines"]["ours-openvino"]["backend"]["networks"]
    for stage, role in (("2d", "loc2d"), ("3d", "seg3d")):
        assert report["pipelines"]["ours-openvino"]["precision"][stage] == ov_networks[role][0]["precision"]
        assert report["pipelines"]["monai"]["precision"][stage] == "fp32"
    for name, p in report["pipelines"].items():
        assert set(p["stage_seconds"]) == {"read", "preprocess", "resample", "2d", "3d", "fusion", "write"}
        # the demo weights were trained at the `small` spacing: every pipeline resamples the tiny studies
        assert p["spacing"]["resampled"] and p["spacing"]["network_spacing_zyx_mm"] == [6.1, 4.2, 4.2]
        assert 0 < p["resample_share"] < 1
        assert 0 < p["end_to_end_p50"] <= p["end_to_end_p95"]
        assert p["peak_rss_mb"] > 50 and p["studies_per_minute_one_at_a_time"] > 0
        assert_mask_check(name, p)
        # FLOPs executed: what each ran, times the per-item count of the networks
        expected = p["slices_run_mean"] * report["flops_per_item"]["2d_per_slice"] / 1e9
        assert p["gflop_2d"] == pytest.approx(expected)
        outside = p["end_to_end_mean"] - p["stage_seconds"]["2d"] - p["stage_seconds"]["3d"]
        # each stage's FLOPs at the peak of the precision it ran in
        floor = (p["gflop_2d"] / peaks[p["precision"]["2d"]]["gflops"]
                 + p["gflop_3d"] / peaks[p["precision"]["3d"]]["gflops"] + outside)
        assert p["floor_seconds"] == pytest.approx(floor)
    ours, monai = report["pipelines"]["ours-onnxruntime"], report["pipelines"]["monai"]
    assert ours["studies_per_minute_pipelined"] > 0 and ours["pipelined_failed"] == 0
    assert ours["slices_run_mean"] < monai["slices_run_mean"]  # air skipped; the peers run every slice
    reference = report["pipelines"]["ours-onnxruntime-all-slices"]
    assert reference["slices_run_mean"] == monai["slices_run_mean"]
    assert all(d is None or d >= 0.995 for d in ours["dice_on_body_slices"])
    assert "vs monai" in report_path.with_suffix(".md").read_text()
    # a second report of the same day goes beside the first, which stays as it was
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from report import write_report

    first = {p: p.read_bytes() for p in out.iterdir()}
    paths = write_report(report, out)
    assert {p.name for p in paths.values()} == {report_path.stem + "-2" + s for s in (".json", ".md", ".png")}
    assert all(p.read_bytes() == b for p, b in first.items())
    assert f"({report_path.stem}-2.png)" in paths["md"].read_text()


# a GPU host has neither SimpleITK nor cc3d (nor, perhaps, matplotlib): importing any of them fails
BLOCK = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {"SimpleITK", "cc3d", "matplotlib"}:
            raise ImportError(f"{name} is not installed on this host (blocked by the test)")
sys.meta_path.insert(0, Block())
"""


def test_in_memory_benchmark_needs_no_image_io(tmp_path):
    block = tmp_path / "block"
    block.mkdir()
    (block / "sitecustomize.py").write_text(BLOCK)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(block), os.environ.get("PYTHONPATH")]))}
    check = subprocess.run([sys.executable, "-c", "import SimpleITK"], env=env, capture_output=True, text=True)
    assert check.returncode != 0 and "blocked by the test" in check.stderr  # the block works
    out = tmp_path / "results"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--in-memory", "--peers",
                           "monai", "--out", str(out), "--work", str(tmp_path / "work")],
                          capture_output=True, text=True, timeout=1800, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (report_path,) = out.glob("*.json")
    assert not list(out.glob("*.png"))
    report = json.loads(report_path.read_text())
    assert report["plot"].startswith("not drawn") and report["args"]["in_memory"]
    assert set(report["pipelines"]) == {"ours-onnxruntime-all-slices", "ours-onnxruntime", "monai"}
    for name, p in report["pipelines"].items():
        assert p["stage_seconds"]["read"] is None and p["stage_seconds"]["write"] is None
        assert p["stage_seconds"]["2d"] > 0 and p["stage_seconds"]["3d"] > 0
        assert "studies_per_minute_pipelined" not in p
        assert_mask_check(name, p)
    assert report["pipelines"]["ours-onnxruntime"]["slices_run_mean"] < report["pipelines"]["monai"]["slices_run_mean"]
    assert "not measured" in report_path.with_suffix(".md").read_text()


def _refusal(tmp_path, *extra):
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--out", str(tmp_path / "r"),
                           "--work", str(tmp_path / "w"), *extra], capture_output=True, text=True, timeout=300)
    assert not (tmp_path / "r").exists() and not (tmp_path / "w").exists()  # refused before any work
    return proc


def test_unknown_peer_is_refused_by_name(tmp_path):
    proc = _refusal(tmp_path, "--peers", "monai,nnunet")
    assert proc.returncode == 2 and "unknown peer(s) nnunet; choose from monai, nnunet-style" in proc.stderr


def test_cuda_without_a_gpu_is_refused_clearly(tmp_path):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present")
    proc = _refusal(tmp_path, "--device", "cuda")
    assert proc.returncode == 2 and "needs a CUDA GPU" in proc.stderr and "Traceback" not in proc.stderr
