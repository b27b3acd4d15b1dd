"""The benchmark report sets each stage against the peak of the precision it ran in."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from report import speedup_target, stage_precisions, summarise  # noqa: E402


def _run(networks=None, seconds=None):
    seconds = seconds or {"2d": 2.0, "3d": 4.0}
    row = {"case_id": "a", "end_to_end": 10.0, "seconds": seconds, "work": {"slices_run": 10, "windows_run": 2}}
    run = {"studies": [row], "peak_rss_mb": 100.0, "dice_vs_ref": [1.0]}
    if networks is not None:
        run["backend"] = {"networks": networks}
    return run


def test_stage_precision_from_what_each_network_ran():
    mixed = {"loc2d": [{"precision": "fp32"}], "seg3d": [{"precision": "bf16"}]}
    assert stage_precisions(_run(mixed), "fp32") == {"2d": "fp32", "3d": "bf16"}
    assert stage_precisions(_run(), "fp32") == {"2d": "fp32", "3d": "fp32"}  # a peer: PyTorch fp32
    assert stage_precisions(_run({"loc2d": [{"file": "x"}], "seg3d": []}), "fp16") == {"2d": "fp16", "3d": "fp16"}


def test_shares_and_floor_use_each_stages_peak():
    flops = {"2d_per_slice": 20e9, "3d_per_window": 100e9}  # 200 and 200 GFLOP run
    peaks = {"fp32": {"gflops": 100.0}, "bf16": {"gflops": 400.0}}
    runs = {"ref": _run(), "ours": _run({"loc2d": [{"precision": "fp32"}], "seg3d": [{"precision": "bf16"}]})}
    out = summarise(runs, flops, peaks, "ref")
    ours, ref = out["ours"], out["ref"]
    # 2D: 200 GFLOP in 2 s = 100 GFLOP/s = 100% of fp32; 3D: 200 GFLOP in 4 s = 50 = 12.5% of bf16
    assert ours["share_of_matmul_peak"]["2d"] == pytest.approx(1.0)
    assert ours["share_of_matmul_peak"]["3d"] == pytest.approx(0.125)
    # networks: floor 2 s (2D at 100) + 0.5 s (3D at 400) over 6 s of network time
    assert ours["share_of_matmul_peak"]["networks"] == pytest.approx(2.5 / 6.0)
    assert ours["floor_seconds"] == pytest.approx(2.5 + 4.0)  # + 4 s outside the networks
    assert ref["share_of_matmul_peak"]["3d"] == pytest.approx(0.5) and ref["floor_seconds"] == pytest.approx(8.0)


def test_targets_by_the_cpus_bf16_unit():
    assert speedup_target("AMX-BF16", True, "nnunet-style") == 8.0
    assert speedup_target("AMX-BF16", True, "monai") == 12.0
    assert speedup_target("AVX512-BF16", True, "nnunet-style") == 4.0
    assert speedup_target("AVX512-BF16", True, "monai") == 2.5
    assert speedup_target("AMX-BF16", False, "nnunet-style") == 2.5  # fp32 only
