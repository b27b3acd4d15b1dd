"""Resampling between a study's native grid and the networks' grid (numpy only).

The networks run at the spacing they were trained at (``Spec.spacing_zyx_mm``). A study at
another spacing is resampled onto a grid with the same origin and direction, the network's
spacing, and ``round(n * native / network)`` voxels per axis; the 3D probabilities and the cue
come back onto the native grid before the fusion threshold, so the mask lies exactly on the
PET grid. Voxel centres map by index: network voxel ``j`` sits at native continuous index
``j * network / native`` (same origin), clamped to the volume (edge voxels repeat where the
new grid overhangs by a fraction of a voxel).

Interpolation (measured by ``scripts/measure_resampling.py``, PSF-blurred spheres of 4-30 mm
against the same spheres sampled directly on the target grid; mean |SUVmax error|):

- PET: Keys cubic convolution (a = -0.5, 4 taps, no prefilter). `full` (3 x 2.04 mm) to the
  demo's 6.1 x 4.2 mm: linear 3.6 %, Keys 0.75 %, cubic B-spline 0.23 %; clinical 4 mm to
  autoPET's grid: 11.0 %, 3.9 %, 2.1 %. Linear flattens small hot lesions, the very signal the
  networks look for; the B-spline's global prefilter (a recursive filter over each whole axis)
  buys a little more at the cost of a second pass per axis and a harder device kernel.
- CT: linear (the CT window is wide, and cubic overshoot at air/bone edges is not data).
- 3D probabilities and cue, back to the native grid: linear (stays within [0, 1], monotone
  between neighbours; thresholds are applied after it, as nnU-Net does with order 1).

Axis order: everything here is numpy (z, y, x); ``Geometry.spacing`` is ITK (x, y, z).
Passes run z, then y, then x, each in float32 with one rounding per operation, so
``kernels.cu``'s resampling kernels can match them bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import L2SError
from .geometry import Geometry

# Relative difference under which a study's spacing counts as the network's, per axis. File
# headers carry float32 (rel. 6e-8) or DICOM decimal strings (autoPET's 2.0364201 vs the
# recorded 2.0364: rel. 1e-5); at 1e-3 the unresampled scale error is <= 0.1 % (0.13 voxel
# across a 128-voxel patch), while resampling would interpolate, i.e. blur, every voxel.
SPACING_RTOL = 1e-3
KEYS_A = -0.5
ORDERS = ("linear", "cubic")
PET_ORDER, CT_ORDER = "cubic", "linear"  # onto the network grid (inference and training alike)


class GridError(L2SError):
    """A grid cannot be mapped onto the networks' grid (its spacing is not usable)."""


def spacing_zyx(geometry: Geometry) -> tuple[float, float, float]:
    """The grid's spacing in numpy order (z, y, x), mm (``Geometry.spacing`` is x, y, z)."""
    return tuple(float(s) for s in reversed(geometry.spacing))


def equal_axes(native_zyx, network_zyx, rtol: float = SPACING_RTOL) -> tuple[bool, ...]:
    """Per axis, whether the native spacing counts as the network's (relative ``rtol``)."""
    return tuple(abs(s - t) <= rtol * t for s, t in zip(native_zyx, network_zyx))


def network_shape(shape, native_zyx, network_zyx, rtol: float = SPACING_RTOL) -> tuple[int, ...]:
    """The network grid's shape: ``round(n * native / network)`` (at least 1), unchanged on
    axes whose spacing already counts as the network's."""
    return tuple(int(n) if same else max(1, int(round(n * s / t)))
                 for n, s, t, same in zip(shape, native_zyx, network_zyx, equal_axes(native_zyx, network_zyx, rtol)))


def source_positions(n_in: int, n_out: int, step: float) -> np.ndarray:
    """Continuous source indices of ``n_out`` outputs ``step`` source voxels apart, starting at
    source voxel 0 (shared origin), clamped to [0, n_in - 1], float64."""
    return np.clip(np.arange(n_out, dtype=np.float64) * step, 0.0, n_in - 1)


def linear_table(n_in: int, n_out: int, step: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(index0, index1, weight1) of linear resampling: ``v = a + (b - a) * w``; float32 weights."""
    pos = source_positions(n_in, n_out, step)
    i0 = np.floor(pos).astype(np.int64)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, (pos - i0).astype(np.float32)


def keys_weights(t: np.ndarray, a: float = KEYS_A) -> np.ndarray:
    """Keys' cubic convolution kernel at offsets ``t`` (float64)."""
    t = np.abs(t)
    near = ((a + 2.0) * t - (a + 3.0)) * t * t + 1.0
    far = ((a * t - 5.0 * a) * t + 8.0 * a) * t - 4.0 * a
    return np.where(t <= 1.0, near, np.where(t < 2.0, far, 0.0))


def cubic_table(n_in: int, n_out: int, step: float) -> tuple[np.ndarray, np.ndarray]:
    """(indices (n_out, 4), weights (n_out, 4) float32) of Keys cubic resampling; taps beyond
    the volume repeat the edge voxel."""
    pos = source_positions(n_in, n_out, step)
    base = np.floor(pos).astype(np.int64)
    taps = base[:, None] + np.arange(-1, 3)[None, :]
    weights = keys_weights(pos[:, None] - taps).astype(np.float32)
    return np.clip(taps, 0, n_in - 1), weights


def axis_tables(shape_in, shape_out, spacing_in_zyx, spacing_out_zyx, order: str, axes=(True, True, True)) -> tuple:
    """One table per axis; None on the axes not in ``axes`` (kept as they are)."""
    if order not in ORDERS:
        raise ValueError(f"interpolation must be one of {', '.join(ORDERS)}, got {order!r}")
    make = linear_table if order == "linear" else cubic_table
    return tuple(make(n_in, n_out, t / s) if resample_axis else None
                 for n_in, n_out, s, t, resample_axis in zip(shape_in, shape_out, spacing_in_zyx, spacing_out_zyx, axes))


def _along(x: np.ndarray, axis: int, table) -> np.ndarray:
    """One resampling pass over ``axis`` of a float32 array (the table's kind decides how)."""
    shape = [1] * x.ndim
    shape[axis] = -1
    if len(table) == 3:  # linear: a + (b - a) * w
        i0, i1, w = table
        a = np.take(x, i0, axis=axis)
        b = np.take(x, i1, axis=axis)
        b -= a
        b *= w.reshape(shape)
        b += a
        return b
    taps, weights = table  # cubic: ((v0 w0 + v1 w1) + v2 w2) + v3 w3
    out = np.take(x, taps[:, 0], axis=axis) * weights[:, 0].reshape(shape)
    for k in range(1, taps.shape[1]):
        out += np.take(x, taps[:, k], axis=axis) * weights[:, k].reshape(shape)
    return out


def resample(volume: np.ndarray, tables: tuple, slab: int = 8) -> np.ndarray:
    """``volume`` (z, y, x; any real dtype) resampled with per-axis ``tables``, as float32.

    Separable: z, then y, then x, slab by slab along the output's z so the temporaries are a
    few slabs, not volumes.
    """
    tz, ty, tx = tables
    nz = volume.shape[0] if tz is None else len(tz[0])
    ny = volume.shape[1] if ty is None else len(ty[0])
    nx = volume.shape[2] if tx is None else len(tx[0])
    out = np.empty((nz, ny, nx), np.float32)
    for z0 in range(0, nz, slab):
        z1 = min(z0 + slab, nz)
        if tz is None:
            x = volume[z0:z1].astype(np.float32)
        else:  # the source planes this slab needs, then the z pass
            sub = tuple(t[z0:z1] for t in tz)
            lo = int(sub[0].min())
            hi = int((sub[1] if len(sub) == 3 else sub[0]).max()) + 1
            planes = volume[lo:hi].astype(np.float32)
            shifted = (sub[0] - lo, sub[1] - lo, sub[2]) if len(sub) == 3 else (sub[0] - lo, sub[1])
            x = _along(planes, 0, shifted)
        if ty is not None:
            x = _along(x, 1, ty)
        if tx is not None:
            x = _along(x, 2, tx)
        out[z0:z1] = x
    return out


@dataclass(frozen=True)
class GridMap:
    """A study's native grid and the networks' grid (same origin and direction).

    Attributes:
        native: the study's (PET) grid.
        network: the grid the networks run on; equals ``native`` when no axis is resampled.
        network_spacing_zyx: the spacing the networks were trained at (z, y, x mm).
    """

    native: Geometry
    network: Geometry
    network_spacing_zyx: tuple[float, float, float]
    axes: tuple[bool, bool, bool] = (False, False, False)  # which numpy axes are resampled

    @property
    def resampled(self) -> bool:
        return any(self.axes)

    def tables(self, direction: str, order: str) -> tuple:
        """Per-axis tables "to_network" or "to_native" with ``order`` interpolation."""
        src, dst = (self.native, self.network) if direction == "to_network" else (self.network, self.native)
        return axis_tables(src.shape, dst.shape, spacing_zyx(src), spacing_zyx(dst), order, self.axes)

    def to_network(self, volume: np.ndarray, order: str) -> np.ndarray:
        """A native-grid volume on the network grid (float32; itself when not resampled)."""
        return resample(volume, self.tables("to_network", order)) if self.resampled else volume

    def to_native(self, volume: np.ndarray) -> np.ndarray:
        """A network-grid map (probabilities, cue) back on the native grid, linearly."""
        return resample(volume, self.tables("to_native", "linear")) if self.resampled else volume

    def network_sources(self, axis: int, native_index: np.ndarray) -> np.ndarray:
        """The network-grid indices along ``axis`` that the native indices' values are
        interpolated from (sorted, unique): e.g. the coronal slices a native slice needs."""
        table = self.tables("to_native", "linear")[axis]
        native_index = np.asarray(native_index, np.int64)
        if table is None:
            return np.unique(native_index)
        i0, i1, w = table
        used = np.concatenate([i0[native_index], i1[native_index][w[native_index] > 0]])
        return np.unique(used)

    def describe(self, seconds: float) -> dict:
        """What report.json records of the resampling of one study."""
        return {"native_spacing_zyx_mm": [round(s, 6) for s in spacing_zyx(self.native)],
                "network_spacing_zyx_mm": list(self.network_spacing_zyx),
                "native_shape": list(self.native.shape), "network_shape": list(self.network.shape),
                "resampled": self.resampled, "resample_seconds": round(seconds, 4)}


def grid_map(geometry: Geometry, network_spacing_zyx, rtol: float = SPACING_RTOL) -> GridMap:
    """The network grid of a study on ``geometry`` (origin and direction kept); axes whose
    spacing counts as the network's (``SPACING_RTOL``) keep their voxels untouched."""
    native_zyx = spacing_zyx(geometry)
    network_zyx = tuple(float(v) for v in network_spacing_zyx)
    if not all(math.isfinite(v) and v > 0 for v in native_zyx):
        raise GridError(f"spacing {geometry.spacing} (x, y, z, mm) must be finite and positive to resample "
                        f"the study to the networks' {network_zyx} (z, y, x); fix the image header")
    shape = network_shape(geometry.shape, native_zyx, network_zyx, rtol)
    axes = tuple(not same for same in equal_axes(native_zyx, network_zyx, rtol))
    new_zyx = tuple(t if resampled else s for s, t, resampled in zip(native_zyx, network_zyx, axes))
    network = Geometry(size=tuple(reversed(shape)), spacing=tuple(reversed(new_zyx)),
                       origin=geometry.origin, direction=geometry.direction)
    return GridMap(geometry, network, network_zyx, axes)
