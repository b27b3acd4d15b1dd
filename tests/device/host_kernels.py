"""``kernels.cu`` compiled for the CPU with g++ and launched through ctypes on numpy arrays.

The same source as the GPU runs, so its index math, bounds and arithmetic are checked here
against the numpy host path where there is no GPU (the GPU tests repeat the checks with CuPy).
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import numpy as np

from l2s_engine.cuda.kernels import NAMES, SOURCE, Kernels

SHIM = Path(__file__).with_name("host_shim.h")


def compile_host_kernels(out_dir: Path) -> Path:
    """Build ``kernels.cu`` into a shared library for this CPU; returns its path."""
    compiler = shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        raise RuntimeError("no C++ compiler (g++) to build the kernels for the CPU")
    lib = out_dir / "l2s_kernels_host.so"
    subprocess.run([compiler, "-O2", "-ffp-contract=off", "-fno-fast-math", "-fPIC", "-shared",
                    "-include", str(SHIM), "-x", "c++", str(SOURCE), "-o", str(lib)], check=True)
    return lib


def _ctype(arg):
    if isinstance(arg, np.ndarray):
        return ctypes.c_void_p(arg.ctypes.data)
    if isinstance(arg, np.uint64):  # a null pointer
        return ctypes.c_void_p(int(arg) or None)
    if isinstance(arg, np.int32):
        return ctypes.c_int32(int(arg))
    if isinstance(arg, np.int64):
        return ctypes.c_int64(int(arg))
    if isinstance(arg, np.float32):
        return ctypes.c_float(float(arg))
    raise TypeError(f"kernel argument of type {type(arg).__name__}")


class HostKernels(Kernels):
    """The kernels on numpy arrays (CPU build of the same source)."""

    xp = np

    def __init__(self, library: Path):
        self.lib = ctypes.CDLL(str(library))
        self.source = f"{SOURCE.name} built for the CPU"
        for name in NAMES:
            getattr(self.lib, name).restype = None

    def launch(self, name: str, n: int, args: tuple) -> None:
        getattr(self.lib, name)(*(_ctype(a) for a in args))
