"""tensorrt backend: the fp16 plans of an engine directory, run on CUDA streams.

Follows the TensorRT 10.x Python API (the ``gpu`` extra pins ``tensorrt>=10``):
``trt.Logger``, ``trt.Runtime`` and ``Runtime.deserialize_cuda_engine`` (None on failure),
``ICudaEngine.num_io_tensors`` / ``get_tensor_name`` / ``get_tensor_mode``
(``trt.TensorIOMode.INPUT``) / ``get_tensor_dtype`` / ``get_tensor_profile_shape(name, 0)``
(min, opt, max), ``ICudaEngine.create_execution_context`` (None on failure), and per call
``IExecutionContext.set_input_shape``, ``set_tensor_address`` (both return False on
failure) and ``execute_async_v3(stream_handle)`` (False on failure); ``trt.nptype`` maps
TensorRT dtypes to numpy. Every return value is checked.

One execution context per CUDA stream, each with its output buffer allocated once for the
profile's largest batch; inputs are passed by address (no copy). The plan is refused, with
the rebuild command, when its TensorRT release or GPU architecture differs from this host's
(``manifest.plan_mismatch``). No CUDA-graph capture: every call sets addresses afresh. On a
machine without a CUDA GPU it says so before anything else (``gpu.require_cuda_gpu``): before
TensorRT, CuPy or the engine directory's plans are looked at.

Not run on any machine of this project (no TensorRT there); the pure parts (buffer sizes from
the profile, batch limits, the refusals) are unit-tested.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..manifest import Manifest, ModelFile, plan_gpu_note, plan_mismatch
from .base import Backend, BackendError, import_or_explain
from .gpu import require_cuda_gpu

log = logging.getLogger(__name__)

INSTALL = "pip install 'l2s-engine[gpu]' (TensorRT 10, cuda-python, CuPy)"


def _trt():
    return import_or_explain("tensorrt", "tensorrt", INSTALL)


@dataclass(frozen=True)
class IOPlan:
    """The plan's tensors at the profile's largest batch (what the buffers are sized for)."""

    input_name: str
    input_max: tuple[int, ...]
    output_name: str
    output_max: tuple[int, ...]
    output_dtype: str

    @property
    def max_batch(self) -> int:
        return self.input_max[0]

    def output_nbytes(self) -> int:
        return math.prod(self.output_max) * np.dtype(self.output_dtype).itemsize


def io_plan(model: ModelFile) -> IOPlan:
    """Buffer shapes from the manifest: the input's max profile shape, the output's shape at
    that batch.

    Raises:
        BackendError: the entry has no profile for its input, or is not one input, one output.
    """
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise BackendError(f"{model.path}: the tensorrt backend runs one-input, one-output plans")
    (inp,), (out,) = model.inputs, model.outputs
    profile = model.extra.get("profile", {}).get(inp.name)
    if not profile or len(profile) != 3:
        raise BackendError(f"{model.path}: the manifest gives no min/opt/max profile for input {inp.name!r}; "
                           "rebuild the plans with l2s-export")
    input_max = tuple(int(n) for n in profile[2])
    batch = input_max[0]
    output_max = tuple(batch if n == -1 else int(n) for n in out.shape)
    return IOPlan(inp.name, input_max, out.name, output_max, out.dtype)


def check_batch(plan: IOPlan, shape: tuple[int, ...], path: str) -> None:
    """Refuse a batch the plan's profile does not cover (the pipeline's batch is too big)."""
    if shape[1:] != plan.input_max[1:]:
        raise BackendError(f"{path}: input shape {shape}, the plan takes (N, {', '.join(map(str, plan.input_max[1:]))})")
    if not 1 <= shape[0] <= plan.max_batch:
        raise BackendError(f"{path}: batch of {shape[0]}, the plan's profile allows 1..{plan.max_batch}; use a "
                           f"smaller --batch-2d/--batch-3d or rebuild the plans with a larger profile")


def gpu_identity(device: int = 0) -> dict[str, str]:
    """Name and compute capability ('major.minor') of a CUDA device (cuda-python runtime API):
    what a plan is tied to, recorded by l2s-export and checked here."""
    cudart = import_or_explain("cuda.bindings.runtime", "tensorrt", INSTALL)
    err, prop = cudart.cudaGetDeviceProperties(device)
    if int(err) != 0:
        raise BackendError(f"cudaGetDeviceProperties({device}) failed: {err}")
    name = prop.name.decode(errors="replace").rstrip("\x00") if isinstance(prop.name, bytes) else str(prop.name)
    return {"gpu_name": name, "compute_capability": f"{prop.major}.{prop.minor}"}


class TensorRTBackend(Backend):
    """Runs a serialized TensorRT plan (fp16, strongly typed) on the GPU.

    Args:
        path: the .plan file.
        model: its manifest entry (with TensorRT version, compute capability and profile).
        device: CUDA device index.
    """

    name = "tensorrt"
    format = "plan"
    device_capable = True

    def __init__(self, path: Path, model: ModelFile, device: int = 0):
        super().__init__(path, model)
        self.io = io_plan(model)
        self.device = device
        self.engine = None
        self.contexts: dict[int, tuple] = {}  # stream pointer -> (context, output buffer)
        self.host_stream = None  # the one stream of host-array calls (``infer``): one context for them

    @classmethod
    def model_files(cls, manifest: Manifest, role: str, precision: str) -> list[ModelFile]:
        # the first thing checked when an engine opens this backend: without a GPU, what the
        # engine directory holds (plans or not) is beside the point
        require_cuda_gpu("the tensorrt backend")
        if precision != "fp16":
            raise BackendError("TensorRT plans are built in fp16 only; use --precision fp16 (or --backend auto)")
        return manifest.select(role, cls.format, "fp16")

    @classmethod
    def from_options(cls, path: Path, model: ModelFile, options) -> TensorRTBackend:
        device = options.device or "cuda"
        if not device.startswith("cuda"):
            raise BackendError(f"the tensorrt backend runs on a CUDA GPU, not {device!r}")
        return cls(path, model, int(device.partition(":")[2] or 0))

    def _activate(self) -> None:
        require_cuda_gpu("the tensorrt backend")  # before "tensorrt is not installed": the more basic fact
        trt = _trt()
        gpu = gpu_identity(self.device)
        problem = plan_mismatch(self.model, trt.__version__, gpu["compute_capability"])
        if problem:
            raise BackendError(problem)
        note = plan_gpu_note(self.model, gpu["gpu_name"])
        if note:
            log.warning("%s", note)
        # the plan's memory, its contexts and the host path's stream belong to this device
        import_or_explain("cupy", "tensorrt", INSTALL).cuda.Device(self.device).use()
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        if runtime is None:
            raise BackendError("trt.Runtime could not be created")
        engine = runtime.deserialize_cuda_engine(self.path.read_bytes())
        if engine is None:
            raise BackendError(f"{self.path}: TensorRT could not deserialize the plan; rebuild it with l2s-export")
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        if inputs != [self.io.input_name] or self.io.output_name not in names:
            raise BackendError(f"{self.path}: plan tensors {names} differ from the manifest's "
                               f"({self.io.input_name!r} -> {self.io.output_name!r}); rebuild it with l2s-export")
        built_max = tuple(engine.get_tensor_profile_shape(self.io.input_name, 0)[2])
        if built_max != self.io.input_max:
            raise BackendError(f"{self.path}: plan profile max {built_max} differs from the manifest's "
                               f"{self.io.input_max}; rebuild it with l2s-export")
        out_dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(self.io.output_name)))
        if out_dtype != np.dtype(self.io.output_dtype):
            raise BackendError(f"{self.path}: plan output is {out_dtype}, the manifest says {self.io.output_dtype}")
        self.runtime, self.engine = runtime, engine

    def _deactivate(self) -> None:
        self.contexts.clear()
        self.engine = self.runtime = self.host_stream = None

    def prepare(self, stream) -> None:
        """Create this plan's execution context for ``stream`` now (not inside a timed batch)."""
        self._context(stream)

    def _context(self, stream):
        found = self.contexts.get(stream.ptr)
        if found is None:
            cupy = import_or_explain("cupy", "tensorrt", INSTALL)
            context = self.engine.create_execution_context()
            if context is None:
                raise BackendError(f"{self.path}: create_execution_context failed (out of GPU memory?)")
            out = cupy.empty(self.io.output_max, self.io.output_dtype)
            found = self.contexts[stream.ptr] = (context, out)
        return found

    def infer_device(self, x, stream):
        self.check_device_input(x)
        check_batch(self.io, tuple(x.shape), self.path.name)
        if not x.flags.c_contiguous:
            raise BackendError(f"{self.path.name}: device input must be C-contiguous")
        context, out = self._context(stream)
        n = int(x.shape[0])
        _ok(context.set_input_shape(self.io.input_name, tuple(int(s) for s in x.shape)), "set_input_shape", self.path)
        expected = (n, *self.io.output_max[1:])
        shape = tuple(int(s) for s in context.get_tensor_shape(self.io.output_name))
        if shape != expected:  # the output buffer is sized from the manifest: never let the plan write past it
            raise BackendError(f"{self.path.name}: the plan's output for a batch of {n} is {shape}, the manifest says "
                               f"{expected}; rebuild the plans with l2s-export")
        _ok(context.set_tensor_address(self.io.input_name, int(x.data.ptr)), "set_tensor_address (input)", self.path)
        _ok(context.set_tensor_address(self.io.output_name, int(out.data.ptr)), "set_tensor_address (output)", self.path)
        _ok(context.execute_async_v3(stream.ptr), "execute_async_v3", self.path)
        result = out[:n]
        return result if result.dtype == np.float32 else result.astype(np.float32)

    def _infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        cupy = import_or_explain("cupy", "tensorrt", INSTALL)
        (array,) = feed.values()
        if self.host_stream is None:
            self.host_stream = cupy.cuda.Stream(non_blocking=True)
        stream = self.host_stream
        with stream:
            out = self.infer_device(cupy.asarray(np.ascontiguousarray(array)), stream).get(stream=stream)
        stream.synchronize()
        return {self.io.output_name: out}

    @staticmethod
    def version() -> str:
        return _trt().__version__


def _ok(result: bool, call: str, path: Path) -> None:
    if not result:
        raise BackendError(f"{path.name}: TensorRT {call} failed")
