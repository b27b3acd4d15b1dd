"""The GPU pipeline on a real GPU: torch fp16 on two CUDA streams with the CuPy kernels,
against the CPU pipeline (torch fp32 on the CPU, the host stages), on phantom arrays (no
file I/O, no SimpleITK). Skipped without a GPU."""

import gc
from pathlib import Path

import pytest

from l2s_engine.metrics import mask_dice as _dice

from .gpu import cupy_or_skip

pytestmark = pytest.mark.gpu
DEMO = Path(__file__).resolve().parents[2] / "weights" / "demo"


@pytest.fixture(scope="module")
def programs(tmp_path_factory):
    cupy_or_skip()
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch sees no CUDA GPU")
    from l2s_export.checks import check_weights_dirs
    from l2s_export.pipeline import export_programs

    out = tmp_path_factory.mktemp("programs")
    return export_programs([DEMO], check_weights_dirs([DEMO]), out)


def test_torch_fp16_gpu_pipeline_gives_the_cpu_mask(programs):
    from l2s_engine.cuda.engine import DeviceEngine
    from l2s_engine.phantoms import make_phantom
    from l2s_engine.core import InferOptions
    from l2s_engine.pipeline import HostEngine

    gpu_options = InferOptions(backend="torch", device="cuda", precision="fp16")
    lesions = 0
    with HostEngine(programs, InferOptions(backend="torch", full_cue=True)) as cpu, DeviceEngine(programs, gpu_options) as gpu:
        for index in range(4):
            phantom = make_phantom(index, seed=1000, size="small")
            ref = cpu.segment(phantom.pet, phantom.ct, phantom.geometry)
            got = gpu.segment(phantom.pet, phantom.ct, phantom.geometry)
            assert got.work == ref.work
            dice = _dice(got.mask, ref.mask)
            assert dice >= 0.995, (phantom.case_id, dice, int(got.mask.sum()), int(ref.mask.sum()))
            lesions += int(ref.mask.sum())
            # the streams overlap at most for the shorter of the two stages
            t = got.timings
            assert t["device"] > 0 and 0.0 <= t["overlap"] <= min(t["2d"], t["3d"]) + 1e-3
    assert lesions > 0


def test_no_device_memory_growth_over_ten_studies(programs):
    import cupy
    import torch

    from l2s_engine.cuda.engine import DeviceEngine
    from l2s_engine.phantoms import make_phantom
    from l2s_engine.core import InferOptions

    phantoms = [make_phantom(i, seed=2000, size="small") for i in range(10)]
    held = []
    with DeviceEngine(programs, InferOptions(backend="torch", device="cuda", precision="fp16")) as gpu:
        for p in phantoms:
            gpu.segment(p.pet, p.ct, p.geometry)
            gc.collect()
            cupy.cuda.runtime.deviceSynchronize()
            held.append(cupy.get_default_memory_pool().used_bytes() + torch.cuda.memory_allocated())
    # after the first studies have sized the buffers, nothing accumulates
    assert max(held[2:]) <= held[1] + (8 << 20), [h >> 20 for h in held]
