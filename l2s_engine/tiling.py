"""Pure shape math for sliding windows: padding, window starts and the Gaussian weight map."""

from __future__ import annotations

import math

import numpy as np


def pad_amounts(shape: tuple[int, ...], patch: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    """(before, after) padding per axis so every axis is at least the patch (centred)."""
    out = []
    for n, p in zip(shape, patch):
        total = max(p - n, 0)
        out.append((total // 2, total - total // 2))
    return tuple(out)


def window_starts(length: int, patch: int, step_fraction: float) -> list[int]:
    """Start offsets along one axis: evenly spread, first at 0, last at length - patch.

    The number of windows is the fewest with a step of at most ``step_fraction * patch``
    (nnU-Net's rule), so consecutive windows overlap by at least ``1 - step_fraction``.

    Raises:
        ValueError: the axis is shorter than the patch (pad first) or the fraction is not in (0, 1].
    """
    if length < patch:
        raise ValueError(f"axis of {length} voxels is shorter than the patch {patch}: pad it first")
    if not 0.0 < step_fraction <= 1.0:
        raise ValueError(f"step_fraction must be in (0, 1], got {step_fraction}")
    if length == patch:
        return [0]
    count = math.ceil((length - patch) / (patch * step_fraction)) + 1
    step = (length - patch) / (count - 1)
    return [int(round(i * step)) for i in range(count)]


def window_grid(shape: tuple[int, int, int], patch: tuple[int, int, int], step_fraction: float) -> list[tuple[int, int, int]]:
    """All window start corners (z, y, x) covering a (padded) volume."""
    axes = [window_starts(n, p, step_fraction) for n, p in zip(shape, patch)]
    return [(a, b, c) for a in axes[0] for b in axes[1] for c in axes[2]]


def gaussian_weights(patch: tuple[int, ...], sigma_fraction: float = 0.125) -> np.ndarray:
    """Gaussian importance map over a patch, sigma = patch * sigma_fraction per axis.

    Scaled to a maximum of 1; no zeros (values are floored at the smallest positive value of
    the unfloored map, at least 1e-6), so every voxel keeps a weight.
    """
    grids = []
    for p in patch:
        x = np.arange(p, dtype=np.float64) - (p - 1) / 2.0
        grids.append(np.exp(-0.5 * (x / (p * sigma_fraction)) ** 2))
    w = grids[0]
    for g in grids[1:]:
        w = np.multiply.outer(w, g)
    w /= w.max()
    floor = max(float(w[w > 0].min()), 1e-6)
    return np.maximum(w, floor).astype(np.float32)
