"""FP16 TensorRT plans from the fp16 ONNX graphs (TensorRT >= 10, strongly typed networks).

TensorRT API used (Python bindings, TensorRT 10.x, the `gpu` extra): ``trt.Logger``,
``trt.Builder``, ``Builder.create_network`` with
``NetworkDefinitionCreationFlag.STRONGLY_TYPED`` (precisions come from the graph's own
types, which is how TensorRT 10.12+ wants FP16: the fp16 ONNX graph decides, no
``BuilderFlag.FP16``), ``trt.OnnxParser.parse_from_file`` with ``num_errors`` /
``get_error``, ``Builder.create_builder_config``, ``IBuilderConfig.set_memory_pool_limit``
(``MemoryPoolType.WORKSPACE``), ``Builder.create_optimization_profile``,
``IOptimizationProfile.set_shape``, ``IBuilderConfig.add_optimization_profile``,
``IBuilderConfig.create_timing_cache`` / ``set_timing_cache`` / ``get_timing_cache``,
``ITimingCache.serialize`` and ``Builder.build_serialized_network``. Every call that reports
failure (False, None, -1) is checked.

Not exercised here: no machine of this project has the TensorRT builder (see README). The pure
parts (profile shapes, plan names, availability checks) are tested.
"""

from __future__ import annotations

import logging
from pathlib import Path

from l2s_engine.backends.tensorrt import gpu_identity
from l2s_engine.errors import L2SError
from l2s_engine.manifest import ModelFile, sha256_of

log = logging.getLogger("l2s_export")
WORKSPACE_BYTES = 4 << 30
TIMING_CACHE = "timing.cache"


class TensorRTBuildError(L2SError):
    """TensorRT failed to parse or build a network."""


def tensorrt_unavailable_reason() -> str | None:
    """None when plans can be built here, else why not (one line)."""
    try:
        import tensorrt as trt
    except ImportError:
        return "the tensorrt package is not installed (pip install 'l2s-engine[gpu]')"
    if not hasattr(trt, "Builder"):
        return f"tensorrt {getattr(trt, '__version__', '?')} has no builder (lean runtime only)"
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        return "cuda-python is not installed (pip install 'l2s-engine[gpu]')"
    err, count = cudart.cudaGetDeviceCount()
    if int(err) != 0 or count < 1:
        return "no CUDA GPU is visible"
    return None


def profile_shapes(model: ModelFile, batches: tuple[int, int, int]) -> dict[str, list[list[int]]]:
    """min/opt/max input shapes of a model with a dynamic batch axis."""
    (tensor,) = model.inputs
    rest = list(tensor.shape[1:])
    return {tensor.name: [[b, *rest] for b in batches]}


def plan_name(model: ModelFile) -> str:
    """`loc2d_fp16.onnx` -> `loc2d_fp16.plan`."""
    return Path(model.path).with_suffix(".plan").name


def build_plans(out: Path, fp16_models: list[ModelFile], profiles: dict[str, tuple[int, int, int]]) -> list[ModelFile]:
    """Build one plan per fp16 ONNX graph; returns their manifest entries."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    cache_path = out / TIMING_CACHE
    identity = gpu_identity()
    entries = []
    for model in fp16_models:
        shapes = profile_shapes(model, profiles[model.role])
        plan = _build_one(trt, logger, out / model.path, shapes, cache_path)
        path = out / plan_name(model)
        tmp = path.with_name(f".{path.name}.partial")
        tmp.write_bytes(plan)
        tmp.replace(path)
        extra = {"tensorrt_version": trt.__version__, **identity, "profile": shapes, "strongly_typed": True}
        entries.append(ModelFile(model.role, model.fold, "plan", "fp16", path.name, sha256_of(path),
                                 model.inputs, model.outputs, extra))
        log.info("built %s (%s, sm %s)", path.name, identity["gpu_name"], identity["compute_capability"])
    return entries


def _build_one(trt, logger, onnx_path: Path, shapes: dict[str, list[list[int]]], cache_path: Path) -> bytes:
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise TensorRTBuildError(f"{onnx_path}: TensorRT cannot parse the graph: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    profile = builder.create_optimization_profile()
    for name, (low, opt, high) in shapes.items():
        profile.set_shape(name, low, opt, high)
    if config.add_optimization_profile(profile) < 0:
        raise TensorRTBuildError(f"{onnx_path}: invalid optimization profile {shapes}")
    cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.exists() else b"")
    if cache is None or not config.set_timing_cache(cache, False):
        raise TensorRTBuildError(f"{cache_path}: the timing cache does not match this TensorRT/GPU; delete it")
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise TensorRTBuildError(f"{onnx_path}: TensorRT failed to build the engine for profile {shapes} "
                                 "(see the TensorRT log above for the layer)")
    cache_path.write_bytes(bytes(config.get_timing_cache().serialize()))
    return bytes(plan)
