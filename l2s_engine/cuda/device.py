"""The GPU as the device pipeline sees it: arrays, streams, events, pinned memory, kernels.

``CudaDevice`` is CuPy on one GPU. The pipeline touches the device only through this
interface, so the tests also run the whole pipeline on the CPU with numpy arrays and the
CPU build of ``kernels.cu`` (``tests/device``), checking its orchestration against the host
pipeline where there is no GPU.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..backends import Backend
from .kernels import CupyKernels, Kernels, cupy


class CudaDevice:
    """One CUDA GPU through CuPy.

    Args:
        index: the CUDA device number ("cuda:N").
    """

    def __init__(self, index: int = 0):
        from ..backends.gpu import require_cuda_gpu

        require_cuda_gpu(f"the GPU pipeline (--device cuda:{index})")  # before "CuPy is not installed"
        cp = cupy()
        if cp.cuda.runtime.getDeviceCount() <= index:
            raise RuntimeError(f"CUDA device {index} is not visible (CuPy sees "
                               f"{cp.cuda.runtime.getDeviceCount()} GPU(s))")
        self.index = index
        self.cuda = cp.cuda.Device(index)
        self.cuda.use()
        self.xp = cp
        self.kernels: Kernels = CupyKernels()
        props = cp.cuda.runtime.getDeviceProperties(index)
        name = props["name"]
        self.name = name.decode() if isinstance(name, bytes) else str(name)

    def activate(self) -> None:
        """Make this GPU current in the calling thread (the reader thread queues uploads)."""
        self.cuda.use()

    def stream(self):
        return self.xp.cuda.Stream(non_blocking=True)

    def event(self):
        return self.xp.cuda.Event()

    @staticmethod
    def elapsed(start, end) -> float:
        """Seconds between two recorded events (after they completed)."""
        return float(cupy().cuda.get_elapsed_time(start, end)) / 1000.0

    def pinned(self, n: int, dtype) -> np.ndarray:
        """A flat page-locked host buffer (uploads from it run asynchronously)."""
        import cupyx

        return cupyx.empty_pinned((n,), dtype)

    def upload(self, host: np.ndarray, stream):
        """A device copy of ``host`` (page-locked), queued on ``stream``."""
        with stream:
            out = self.xp.empty(host.shape, host.dtype)
            out.set(host, stream=stream)
        return out

    def download(self, array, out: np.ndarray, stream) -> None:
        """Queue a copy of device ``array`` into page-locked host ``out`` on ``stream``, without
        waiting: ``out`` holds it once ``stream`` has run that far (record an event, wait on it)."""
        array.get(stream=stream, out=out, blocking=False)

    @staticmethod
    def runner(net: Backend, stream) -> Callable:
        return lambda x: net.infer_device(x, stream)
