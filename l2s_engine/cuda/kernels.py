"""The kernels of ``kernels.cu`` as methods over device arrays.

``Kernels`` holds the launchers; a subclass says how a kernel is launched. ``CupyKernels``
runs them on the GPU: the module is loaded once, from a prebuilt fatbin
(``cmake --build build/cuda``) when one is found, else CuPy compiles ``kernels.cu`` itself
(NVRTC, cached on disk); which one was used is in ``source`` and a fatbin that does not load
on this GPU is logged before the source is compiled. Launches go to CuPy's *current*
stream: callers enter the engine's stream (``with stream:``) around them. The tests also
compile the same source for the CPU (a C++ shim, ``tests/device``) to check every kernel
against its numpy twin where there is no GPU.

Each launcher mirrors a numpy function of the host path (named in its docstring).
"""

from __future__ import annotations

import functools
import logging
import math
import os
from pathlib import Path

import numpy as np

from ..backends.base import import_or_explain
from ..preprocess import _linear_weights

log = logging.getLogger(__name__)
SOURCE = Path(__file__).with_name("kernels.cu")
FATBIN_NAME = "l2s_kernels.fatbin"
FATBIN_ENV = "L2S_KERNELS_FATBIN"
BLOCK = 256
NAMES = ("normalise", "resize_slices", "add_sigmoid", "scatter_slices", "gather_windows",
         "accumulate_window", "fuse_threshold", "add_probability", "threshold_mean", "resample_linear",
         "resample_cubic")
GRID_TABLES_KEPT = 8  # resampling tables of the last few study grids stay on the device
NULL = np.uint64(0)  # a null pointer argument


def cupy():
    """CuPy, or a MissingDependencyError naming the extra."""
    return import_or_explain("cupy", "GPU", "pip install 'l2s-engine[gpu]' (cupy-cuda12x)")


def fatbin_candidates() -> list[Path]:
    """Where a prebuilt fatbin is looked for, in order: $L2S_KERNELS_FATBIN, beside
    kernels.cu, the repository's CMake build folder."""
    found = [Path(os.environ[FATBIN_ENV])] if os.environ.get(FATBIN_ENV) else []
    return found + [SOURCE.with_name(FATBIN_NAME), SOURCE.parents[2] / "build" / "cuda" / FATBIN_NAME]


def linear_tables(n_in: int, n_out: int, start: int = 0, stop: int | None = None):
    """(index0, index1, weight) of outputs start..stop of an n_in -> n_out bilinear
    resampling as int32/float32 arrays; the identity where the size does not change (as
    ``preprocess.resize_bilinear`` skips that axis)."""
    if n_in == n_out:
        i0 = np.arange(n_out, dtype=np.int64)
        i1, w1 = i0, np.zeros(n_out, np.float32)
    else:
        i0, i1, w1 = _linear_weights(n_in, n_out)
    stop = n_out if stop is None else stop
    return (np.ascontiguousarray(i0[start:stop], np.int32), np.ascontiguousarray(i1[start:stop], np.int32),
            np.ascontiguousarray(w1[start:stop], np.float32))


def element_strides(array) -> tuple[np.int64, ...]:
    return tuple(np.int64(s // array.itemsize) for s in array.strides)


def _i32(*values) -> tuple[np.int32, ...]:
    return tuple(np.int32(v) for v in values)


class Kernels:
    """The kernel launchers over arrays of ``xp`` (the array module of the device)."""

    xp = np
    source = "?"

    def launch(self, name: str, n: int, args: tuple) -> None:
        """Run kernel ``name`` over ``n`` elements (grid-stride) with ``args``."""
        raise NotImplementedError

    @functools.lru_cache(maxsize=64)  # noqa: B019 - one Kernels object per engine, a few shapes
    def tables(self, n_in: int, n_out: int, start: int = 0, stop: int | None = None) -> tuple:
        """``linear_tables`` on the device, uploaded once per shape."""
        return tuple(self.xp.asarray(t) for t in linear_tables(n_in, n_out, start, stop))

    def grid_tables(self, grid, direction: str, order: str) -> tuple:
        """``GridMap.tables(direction, order)`` on the device (int32 indices, float32 weights;
        None where an axis is kept), uploaded once per grid."""
        cache = self.__dict__.setdefault("_grid_tables", {})
        key = (grid.native, grid.network, grid.axes, direction, order)
        if key not in cache:
            if len(cache) >= GRID_TABLES_KEPT:
                del cache[next(iter(cache))]
            cache[key] = tuple(None if table is None else tuple(
                self.xp.asarray(np.ascontiguousarray(a, np.int32 if a.dtype.kind == "i" else np.float32)) for a in table)
                for table in grid.tables(direction, order))
        return cache[key]

    def resample(self, src, tables: tuple, order: str, out) -> None:
        """``resample.resample``: the C-contiguous float32 volume ``src`` onto ``out`` (the
        target grid's shape) with per-axis ``grid_tables`` of ``order`` ("linear" or "cubic")."""
        args = [src, out, *_i32(*src.shape[1:], *out.shape)]
        for table in tables:
            args += [NULL] * (3 if order == "linear" else 2) if table is None else list(table)
        self.launch(f"resample_{order}", out.size, tuple(args))

    def normalise(self, src, low: float, high: float, out) -> None:
        """``preprocess.window``: ``out = (clip(src, low, high) - low) * 2 / (high - low) - 1``."""
        self.launch("normalise", src.size, (src, out, np.int64(src.size), np.float32(low), np.float32(high),
                                            np.float32(2.0 / (high - low))))

    def resize_slices(self, coronal, src, resize: tuple[int, int], crop: tuple[int, int, int, int], out) -> None:
        """``preprocess.slices_to_input`` after the context indices: coronal slices ``src``
        (int32 device array) of the strided coronal view, resized to ``resize`` and cropped,
        into ``out`` (len(src), crop rows, crop cols)."""
        rows, cols = coronal.shape[1:]
        r0, r1, c0, c1 = crop
        self.launch("resize_slices", out.size, (coronal, *element_strides(coronal), src, *_i32(len(src)),
                                                *self.tables(rows, resize[0], r0, r1), *_i32(r1 - r0),
                                                *self.tables(cols, resize[1], c0, c1), *_i32(c1 - c0), out))

    def add_sigmoid(self, logits, probs) -> None:
        """``probs += sigmoid(logits)`` (the fold sum of ``stages.run_loc2d``)."""
        self.launch("add_sigmoid", probs.size, (logits, probs, np.int64(probs.size)))

    def scatter_slices(self, probs, resize: tuple[int, int], crop: tuple[int, int, int, int], dst, coronal) -> None:
        """``preprocess.slices_from_output`` written into slices ``dst`` (int32 device array)
        of the strided coronal view ``coronal`` of the cue volume."""
        items, crop_rows, crop_cols = probs.shape
        rows, cols = coronal.shape[1:]
        self.launch("scatter_slices", items * rows * cols,
                    (probs, *_i32(items, crop_rows, crop_cols, crop[0], crop[2]), *self.tables(resize[0], rows),
                     *_i32(rows), *self.tables(resize[1], cols), *_i32(cols), dst, coronal, *element_strides(coronal)))

    def gather_windows(self, pet, ct, corners, patch: tuple[int, int, int], fill: float, out) -> None:
        """``stages.gather_windows``: ``corners`` (k, 3) int32 device array of window corners
        in volume coordinates (negative where the window overhangs); ``out`` (k, 2, *patch)."""
        self.launch("gather_windows", out.size, (pet, ct, corners, *_i32(len(corners), *pet.shape, *patch),
                                                 np.float32(fill), out))

    def accumulate_window(self, acc, logits, weights, corner: tuple[int, int, int]) -> None:
        """``stages.accumulate`` of one window (``logits`` None: ``stages.weight_sum``'s term)."""
        self.launch("accumulate_window", weights.size, (acc, NULL if logits is None else logits, weights,
                                                        *_i32(*corner, *acc.shape, *weights.shape)))

    def fuse_threshold(self, acc, wsum, cue, p, mask, cue_switch: float, low: float, high: float) -> None:
        """Blend and fuse one fold: ``p = sigmoid(acc / wsum)`` (0 where ``wsum`` is 0; ``p`` may be
        None) and ``mask = p > (cue > cue_switch ? low : high)`` (uint8): ``postprocess.fuse_paper``."""
        self.launch("fuse_threshold", acc.size, (acc, wsum, cue, NULL if p is None else p, mask, np.int64(acc.size),
                                                 np.float32(cue_switch), np.float32(low), np.float32(high)))

    def add_probability(self, acc, wsum, psum) -> None:
        """``psum += sigmoid(acc / wsum)`` where ``wsum > 0`` (``stages.blend_`` summed over folds)."""
        self.launch("add_probability", acc.size, (acc, wsum, psum, np.int64(acc.size)))

    def threshold_mean(self, psum, cue, mask, folds: int, cue_switch: float, low: float, high: float) -> None:
        """``psum /= folds`` in place, then ``postprocess.fuse_paper`` into ``mask``."""
        self.launch("threshold_mean", psum.size, (psum, cue, mask, np.int64(psum.size), np.float32(folds),
                                                  np.float32(cue_switch), np.float32(low), np.float32(high)))


class CupyKernels(Kernels):
    """The kernels on the GPU through CuPy (fatbin when present, else compiled from source)."""

    def __init__(self):
        cp = cupy()
        self.xp = cp
        self.module, self.source = None, ""
        for path in fatbin_candidates():
            if not path.is_file():
                continue
            try:
                module = cp.RawModule(path=str(path))
                for name in NAMES:
                    module.get_function(name)
                self.module, self.source = module, f"fatbin {path}"
                break
            except Exception as exc:  # noqa: BLE001 - a driver error of any kind: compile instead
                log.warning("prebuilt kernels %s do not load on this GPU (%s); compiling %s instead",
                            path, exc, SOURCE.name)
        if self.module is None:
            self.module = cp.RawModule(code=SOURCE.read_text(), options=("--std=c++17",))
            self.source = f"{SOURCE.name} compiled by CuPy (NVRTC)"
        self.functions = {name: self.module.get_function(name) for name in NAMES}

    def launch(self, name: str, n: int, args: tuple) -> None:
        if n:
            self.functions[name]((max(1, min(math.ceil(n / BLOCK), 65535)),), (BLOCK,), args)
