"""torch backend: the ``*.pt2`` programs (torch.export) in fp16 on a CUDA GPU, or fp32 on the CPU.

The GPU path that can be checked where TensorRT is absent. fp16 runs under
``torch.autocast`` with float32 weights, so convolutions run in fp16 while the normalisations
stay in float32 (as in the fp16 ONNX graph that TensorRT compiles). torch is imported only
when the backend is activated.

The programs are read by ``pt2.load_program``, which unpickles nothing (``torch.export.load``
would: a ``.pt2`` file could run code in this process); see README, "Engine folders are code".
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..manifest import Manifest, ModelFile
from .base import Backend, BackendError, import_or_explain
from .pt2 import load_program


def _torch():
    return import_or_explain("torch", "torch", "pip install torch (the CUDA build for GPUs; see the README for the pinned version)")


class TorchBackend(Backend):
    """Runs a torch.export program.

    Args:
        path: the .pt2 file.
        model: its manifest entry.
        device: "cuda", "cuda:N" or "cpu".
        half: fp16 compute (autocast); CUDA only.
        threads: CPU threads for torch (None: torch's default).
    """

    name = "torch"
    format = "pt2"
    device_capable = True

    def __init__(self, path: Path, model: ModelFile, device: str = "cpu", half: bool = False,
                 threads: int | None = None):
        super().__init__(path, model)
        if half and not device.startswith("cuda"):
            raise BackendError(f"{path.name}: the torch backend runs fp16 on CUDA only; use --precision fp32 "
                               "on the CPU")
        self.device, self.half, self.threads = device, half, threads
        self.module = None
        self.streams: dict[int, object] = {}  # CuPy stream pointer -> torch.cuda.ExternalStream

    @classmethod
    def model_files(cls, manifest: Manifest, role: str, precision: str) -> list[ModelFile]:
        # the programs are stored in float32 whatever the compute precision
        return manifest.select(role, cls.format, "fp32")

    @classmethod
    def from_options(cls, path: Path, model: ModelFile, options) -> TorchBackend:
        return cls(path, model, device=options.device or "cpu", half=options.precision == "fp16",
                   threads=options.threads)

    def _activate(self) -> None:
        torch = _torch()
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendError(f"the torch backend was asked for {self.device}, but torch sees no CUDA GPU")
        if self.threads:
            torch.set_num_threads(self.threads)
        self.module = load_program(self.path).module().to(self.device)

    def _deactivate(self) -> None:
        self.module = None
        self.streams.clear()

    def _infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = _torch()
        (array,) = feed.values()
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16, enabled=self.half):
            out = self.module(torch.from_numpy(np.ascontiguousarray(array)).to(self.device))
        return {self.output_names[0]: out.float().cpu().numpy()}

    def infer_device(self, x, stream):
        """The GPU pipeline's call: a CuPy batch in, a CuPy float32 output out, no copies.

        torch runs on the caller's CUDA stream (``torch.cuda.ExternalStream``); both arrays
        cross by DLPack, exchanged on that same stream, so nothing waits on the host.
        """
        self.check_device_input(x)
        if not self.device.startswith("cuda"):
            raise BackendError(f"{self.path.name}: the torch backend runs the GPU pipeline on CUDA only (--device cuda)")
        torch = _torch()
        cupy = import_or_explain("cupy", "GPU", "pip install 'l2s-engine[gpu]' (cupy-cuda12x)")
        external = self.streams.get(stream.ptr)
        if external is None:
            external = self.streams[stream.ptr] = torch.cuda.ExternalStream(stream.ptr, device=self.device)
        with torch.cuda.stream(external), torch.inference_mode(), \
                torch.autocast("cuda", dtype=torch.float16, enabled=self.half):
            out = self.module(torch.from_dlpack(x)).float()
            return cupy.from_dlpack(out)

    @staticmethod
    def version() -> str:
        return _torch().__version__
