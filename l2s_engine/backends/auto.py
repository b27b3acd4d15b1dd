"""``--backend auto``: the fastest backend this machine and engine directory can run.

tensorrt where the directory has plans that fit this TensorRT and GPU, TensorRT and a GPU are
present; else torch (fp16, CUDA) where the directory has ``.pt2`` programs and torch sees a
GPU; else openvino on the CPU (precision auto) where it is installed and the directory has
IR; else onnxruntime on the CPU. The choice and the reasons the faster ones were passed
over are printed by the CLI: never a silent fallback.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from ..manifest import Manifest, plan_mismatch


@dataclass(frozen=True)
class Probe:
    """What the machine offers. A None field means present; a string says why not."""

    gpu: str | None          # a CUDA GPU that CuPy (the device pipeline) can use
    tensorrt: str | None     # the tensorrt package
    torch_cuda: str | None   # torch with CUDA
    openvino: str | None = "not probed"  # the openvino package (the CPU backend preferred over onnxruntime)
    tensorrt_version: str = ""
    compute_capability: str = ""


@dataclass(frozen=True)
class Choice:
    backend: str
    device: str
    precision: str
    reason: str


def choose(manifest: Manifest, probe: Probe) -> Choice:
    """Pick the backend for ``manifest`` on a machine described by ``probe`` (pure)."""
    passed = []
    plans = [f for f in manifest.files if f.format == "plan"]
    why_not_trt = probe.gpu or probe.tensorrt
    if why_not_trt is None:
        if not plans:
            why_not_trt = "the engine directory has no TensorRT plans (l2s-export on a GPU host builds them)"
        else:
            mismatches = [m for m in (plan_mismatch(f, probe.tensorrt_version, probe.compute_capability)
                                      for f in plans) if m]
            why_not_trt = mismatches[0] if mismatches else None
    if why_not_trt is None:
        return Choice("tensorrt", "cuda", "fp16", "TensorRT plans match this TensorRT and GPU")
    passed.append(f"tensorrt: {why_not_trt}")
    why_not_torch = probe.gpu or probe.torch_cuda
    if why_not_torch is None and not any(f.format == "pt2" for f in manifest.files):
        why_not_torch = "the engine directory has no .pt2 programs"
    if why_not_torch is None:
        return Choice("torch", "cuda", "fp16", "; ".join(passed))
    passed.append(f"torch: {why_not_torch}")
    why_not_openvino = probe.openvino
    if why_not_openvino is None and not any(f.format == "openvino" for f in manifest.files):
        why_not_openvino = ("the engine directory has no OpenVINO IR (exported without openvino, or by an older "
                            "l2s-export: re-export it to get the IR)")
    if why_not_openvino is None:  # faster than onnxruntime in fp32 too (README, "CPU backends")
        return Choice("openvino", "cpu", "auto", "; ".join(passed))
    passed.append(f"openvino: {why_not_openvino}")
    return Choice("onnxruntime", "cpu", "fp32", "; ".join(passed))


def probe_machine() -> Probe:
    """Look at this machine (imports CuPy, TensorRT and torch only if installed, and torch
    only when a GPU is visible)."""
    gpu, cc = _gpu()
    tensorrt, trt_version = "the tensorrt package is not installed (pip install 'l2s-engine[gpu]')", ""
    if importlib.util.find_spec("tensorrt") is not None:
        import tensorrt as trt

        tensorrt, trt_version = None, trt.__version__
    torch_cuda = "not checked: no GPU" if gpu else None
    if torch_cuda is None:
        if importlib.util.find_spec("torch") is None:
            torch_cuda = "torch is not installed"
        else:
            import torch

            torch_cuda = None if torch.cuda.is_available() else "torch sees no CUDA GPU (a CPU build?)"
    openvino = None if importlib.util.find_spec("openvino") else \
        "the openvino package is not installed (pip install 'l2s-engine[openvino]')"
    return Probe(gpu, tensorrt, torch_cuda, openvino, trt_version, cc)


def _gpu() -> tuple[str | None, str]:
    from .gpu import no_cuda_gpu

    no_gpu = no_cuda_gpu()  # asked of the driver first: "no GPU" says more than "no CuPy"
    if no_gpu is not None:
        return f"no CUDA GPU ({no_gpu})", ""
    if importlib.util.find_spec("cupy") is None:
        return "CuPy is not installed (pip install 'l2s-engine[gpu]')", ""
    import cupy

    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return "no CUDA GPU visible", ""
        props = cupy.cuda.runtime.getDeviceProperties(0)
    except Exception as exc:  # noqa: BLE001 - no driver or no device: either way no GPU
        return f"no usable CUDA GPU ({exc})", ""
    return None, f"{props['major']}.{props['minor']}"
