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


def _index_range(coords: np.ndarray, lo: float, hi: float) -> slice | None:
    hits = np.nonzero((coords >= lo) & (coords <= hi))[0]
    return slice(int(hits[0]), int(hits[-1]) + 1) if hits.size else None


def occupancy(grid: BodyGrid, shape: Ellipsoid | Tube) -> tuple[tuple[slice, slice, slice], np.ndarray] | None:
    """Fraction of each voxel inside ``shape`` (a one-voxel linear ramp at the surface).

    Returns:
        (the bounding box as numpy slices, float32 occupancy inside it), or None when the
        shape misses the grid.
    """
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
