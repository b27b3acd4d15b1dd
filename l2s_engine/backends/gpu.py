"""Is there a CUDA GPU? Asked of the NVIDIA driver itself, before any GPU package.

The GPU paths (the tensorrt backend, ``--device cuda``) check this first: on a machine
without a GPU the one fact worth saying is "no CUDA GPU", not that TensorRT, CuPy or the
plans are missing. The driver API (``libcuda``) is loaded with ctypes, so the answer needs
neither CuPy nor torch nor TensorRT, and does not depend on which of them is installed.
"""

from __future__ import annotations

import ctypes
import os
import sys

from .base import NoCudaGpuError

CUDA_SUCCESS = 0
CUDA_ERROR_NO_DEVICE = 100
DRIVER_LIBRARY = "nvcuda.dll" if sys.platform == "win32" else "libcuda.so.1"


def _load_driver():
    """The CUDA driver library, or None where the NVIDIA driver is not installed."""
    if sys.platform == "darwin":
        return None
    try:
        return ctypes.CDLL(DRIVER_LIBRARY)
    except OSError:
        return None


def no_cuda_gpu() -> str | None:
    """Why this machine has no usable CUDA GPU, or None when the driver reports one or more."""
    driver = _load_driver()
    if driver is None:
        return f"the NVIDIA driver ({DRIVER_LIBRARY}) is not installed"
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    hidden = f" (CUDA_VISIBLE_DEVICES={visible!r})" if visible is not None else ""
    status = driver.cuInit(0)
    if status == CUDA_ERROR_NO_DEVICE:
        return f"the NVIDIA driver finds no CUDA device{hidden}"
    if status != CUDA_SUCCESS:
        return f"the NVIDIA driver did not start (cuInit error {status}){hidden}"
    count = ctypes.c_int(0)
    status = driver.cuDeviceGetCount(ctypes.byref(count))
    if status != CUDA_SUCCESS or count.value < 1:
        return f"the NVIDIA driver reports no CUDA device{hidden}"
    return None


def require_cuda_gpu(what: str) -> None:
    """Refuse to go on without a CUDA GPU.

    Args:
        what: what needs the GPU, as the user asked for it ("the tensorrt backend").

    Raises:
        NoCudaGpuError: one line: no CUDA GPU, why, and what runs here instead.
    """
    why = no_cuda_gpu()
    if why is not None:
        raise NoCudaGpuError(what, why)
