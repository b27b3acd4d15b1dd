"""The tensorrt backend on a GPU: plans built from the stand-in engine's graphs, run by the GPU
pipeline, against ONNX Runtime on the CPU. Skipped without a GPU or without TensorRT's builder."""

import json

import pytest

from .gpu import cupy_or_skip

pytestmark = pytest.mark.gpu


def test_tensorrt_gpu_pipeline_gives_the_onnxruntime_mask(tmp_path):
    cupy_or_skip()
    trt = pytest.importorskip("tensorrt", reason="TensorRT is not installed (pip install 'l2s-engine[gpu]')")
    if not hasattr(trt, "Builder"):
        pytest.skip(f"tensorrt {trt.__version__} is the lean runtime: no builder to make the plans")
    from runtime.engines import fast_engine

    from l2s_engine.cuda.engine import DeviceEngine
    from l2s_engine.manifest import MANIFEST, manifest_dict, read_manifest
    from l2s_engine.phantoms import make_phantom
    from l2s_engine.core import InferOptions
    from l2s_engine.pipeline import HostEngine
    from l2s_export.tensorrt_build import build_plans

    engine_dir = fast_engine(tmp_path / "engine")
    manifest = read_manifest(engine_dir)
    plans = build_plans(engine_dir, list(manifest.files), {"loc2d": (1, 8, 16), "seg3d": (1, 2, 4)})
    (engine_dir / MANIFEST).write_text(json.dumps(manifest_dict(manifest.spec, [*manifest.files, *plans], {}), indent=2))
    phantom = make_phantom(0, seed=1000, size="small")
    options = InferOptions(backend="tensorrt", device="cuda", precision="fp16", batch_2d=8, batch_3d=2)
    with HostEngine(engine_dir) as cpu, DeviceEngine(engine_dir, options) as gpu:
        ref = cpu.segment(phantom.pet, phantom.ct, phantom.geometry).mask
        got = gpu.segment(phantom.pet, phantom.ct, phantom.geometry).mask
    total = int(ref.sum()) + int(got.sum())
    assert ref.sum() > 0 and 2.0 * int((ref & got).sum()) / total >= 0.995
