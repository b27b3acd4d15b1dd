"""Painting shapes onto a voxel grid with partial volume, PET blur and noise (numpy only)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .shapes import Ellipsoid, Tube


@dataclass(frozen=True)
class BodyGrid:
    """Body-frame coordinates (mm) of the voxel centres along each numpy axis.

    ``d`` runs along axis 0, ``v`` along axis 1, ``u`` along axis 2; ``ramp`` is the width
    (mm) of the partial-volume edge, about one voxel.
    """

    d: np.ndarray
    v: np.ndarray
    u: np.ndarray
    ramp: float

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.d.size, self.v.size, self.u.size)


@dataclass(frozen=True)
class PosedGrid:
    """A ``BodyGrid`` for a patient lying at a small angle to the scanner.

    ``d``, ``v``, ``u`` are the scanner-frame coordinates (mm) of the voxel centres along the
    numpy axes, as in ``BodyGrid``. The body is rolled by ``roll`` (radians) about the scanner
    axis through ``pivot`` (u, v, d), then leaned: ``lean_u`` and ``lean_v`` mm of sideways
    and forward shift per mm along d from the pivot. A lean is a shear, not a rotation: it
    keeps every body cross-section on one scanner slice (d stays separable, so tubes still
    interpolate along one axis), and at the few degrees drawn it is a rotation to within 0.3%.
    """

    d: np.ndarray
    v: np.ndarray
    u: np.ndarray
    ramp: float
    roll: float
    lean_u: float
    lean_v: float
    pivot: tuple[float, float, float]

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.d.size, self.v.size, self.u.size)

    def to_scanner(self, u, v, d):
        """Scanner-frame (u, v, d) of body-frame points (numpy broadcasting)."""
        pu, pv, pd = self.pivot
        c, s = math.cos(self.roll), math.sin(self.roll)
        du, dv = u - pu, v - pv
        return (pu + c * du - s * dv + self.lean_u * (d - pd),
                pv + s * du + c * dv + self.lean_v * (d - pd), d)

    def to_body(self, box: tuple[slice, slice, slice]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Body-frame (u, v, d) of the voxel centres in ``box``: u and v 3D, d along axis 0."""
        pu, pv, pd = self.pivot
        c, s = np.float32(math.cos(self.roll)), np.float32(math.sin(self.roll))
        d = self.d[box[0]][:, None, None]
        du = self.u[box[2]][None, None, :] - np.float32(pu) - np.float32(self.lean_u) * (d - np.float32(pd))
        dv = self.v[box[1]][None, :, None] - np.float32(pv) - np.float32(self.lean_v) * (d - np.float32(pd))
        return np.float32(pu) + c * du + s * dv, np.float32(pv) - s * du + c * dv, d


_SLAB_VOXELS = 1 << 21  # a posed shape is measured in slabs of about this many voxels (bounded memory)


def _index_range(coords: np.ndarray, lo: float, hi: float) -> slice | None:
    hits = np.nonzero((coords >= lo) & (coords <= hi))[0]
    return slice(int(hits[0]), int(hits[-1]) + 1) if hits.size else None


def occupancy(grid: BodyGrid | PosedGrid, shape: Ellipsoid | Tube) -> tuple[tuple[slice, slice, slice], np.ndarray] | None:
    """Fraction of each voxel inside ``shape`` (a one-voxel linear ramp at the surface).

    Returns:
        (the bounding box as numpy slices, float32 occupancy inside it), or None when the
        shape misses the grid.
    """
    if isinstance(grid, PosedGrid):
        return _posed_occupancy(grid, shape)
    (u0, u1), (v0, v1), (d0, d1) = shape.bounds()
    pad = grid.ramp
    box = (_index_range(grid.d, d0 - pad, d1 + pad), _index_range(grid.v, v0 - pad, v1 + pad),
           _index_range(grid.u, u0 - pad, u1 + pad))
    if any(b is None for b in box):
        return None
    d = grid.d[box[0]][:, None, None]
    v = grid.v[box[1]][None, :, None]
    u = grid.u[box[2]][None, None, :]
    dist = shape.distance(u, v, d).astype(np.float32, copy=False)
    occ = np.clip(0.5 - dist / np.float32(grid.ramp), 0.0, 1.0, dtype=np.float32)
    return box, occ


def _posed_occupancy(grid: PosedGrid, shape: Ellipsoid | Tube):
    """``occupancy`` on a posed grid: the box holds the shape's posed bounding box (an affine
    image of a box has its extremes at the corners), measured in slabs along axis 0."""
    corners = np.array(np.meshgrid(*shape.bounds(), indexing="ij")).reshape(3, -1)
    u, v, d = grid.to_scanner(*corners)
    pad = grid.ramp
    box = (_index_range(grid.d, d.min() - pad, d.max() + pad), _index_range(grid.v, v.min() - pad, v.max() + pad),
           _index_range(grid.u, u.min() - pad, u.max() + pad))
    if any(b is None for b in box):
        return None
    occ = np.empty(tuple(b.stop - b.start for b in box), np.float32)
    step = max(1, _SLAB_VOXELS // (occ.shape[1] * occ.shape[2]))
    for k in range(0, occ.shape[0], step):
        slab = (slice(box[0].start + k, min(box[0].start + k + step, box[0].stop)), box[1], box[2])
        dist = shape.distance(*grid.to_body(slab)).astype(np.float32, copy=False)
        np.clip(0.5 - dist / np.float32(grid.ramp), 0.0, 1.0, out=occ[k:k + step], dtype=np.float32)
    return box, occ


def paint(volume: np.ndarray, box: tuple[slice, ...], occ: np.ndarray, value: float) -> None:
    """Blend ``value`` into ``volume`` in place, weighted by occupancy."""
    region = volume[box]
    region += occ * (np.float32(value) - region)


def gaussian_kernel(sigma: float) -> np.ndarray:
    """A normalised 1D Gaussian sampled at integer offsets out to 3 sigma (at least +-1)."""
    radius = max(1, int(math.ceil(3.0 * sigma)))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / max(sigma, 1e-6)) ** 2)
    return (k / k.sum()).astype(np.float32)


def blur(volume: np.ndarray, sigmas: tuple[float, float, float]) -> np.ndarray:
    """Separable Gaussian blur with edge replication; sigmas in voxels per numpy axis."""
    out = volume
    for axis, sigma in enumerate(sigmas):
        k = gaussian_kernel(sigma)
        radius = k.size // 2
        pad = [(0, 0)] * 3
        pad[axis] = (radius, radius)
        padded = np.pad(out, pad, mode="edge")
        acc = np.zeros_like(volume)
        tmp = np.empty_like(volume)
        n = volume.shape[axis]
        for t, weight in enumerate(k):
            sl = [slice(None)] * 3
            sl[axis] = slice(t, t + n)
            np.multiply(padded[tuple(sl)], weight, out=tmp)
            acc += tmp
        out = acc
    return out


def noise_gain(sigmas: tuple[float, float, float]) -> float:
    """Standard deviation of unit white noise after ``blur`` with these sigmas."""
    return float(np.sqrt(np.prod([np.sum(gaussian_kernel(s).astype(np.float64) ** 2) for s in sigmas])))
