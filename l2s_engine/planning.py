"""What the networks run on for one study: which coronal slices, which windows, in which batches.

Pure functions over shapes and the body mask. Skipping air is exact by construction for the
voxels that matter: a skipped coronal slice or window holds no body voxel (PET and CT both
background), so only air voxels can see a different probability (see ``run_seg3d``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .tiling import pad_amounts, window_grid

BODY_HU = -500.0   # above this a CT voxel is tissue (air is about -1000 HU, lung about -850)
BODY_SUV = 0.3     # above this a PET voxel is activity, not background


def body_mask(pet_suv: np.ndarray, ct_hu: np.ndarray, body_hu: float = BODY_HU, body_suv: float = BODY_SUV) -> np.ndarray:
    """Voxels that are not background in PET or in CT (bool, same shape)."""
    mask = ct_hu > body_hu
    mask |= pet_suv > body_suv
    return mask


def batches(indices: np.ndarray | list, size: int) -> list:
    """``indices`` cut into consecutive batches of at most ``size``."""
    if size < 1:
        raise ValueError(f"batch size must be >= 1, got {size}")
    return [indices[i:i + size] for i in range(0, len(indices), size)]


def occupied_slices(body_coronal: np.ndarray) -> np.ndarray:
    """Indices of the coronal slices (axis 0 of a coronal stack) holding any body voxel."""
    return np.flatnonzero(body_coronal.reshape(body_coronal.shape[0], -1).any(axis=1))


def undecided_slices(p3d_coronal: np.ndarray, low: float, high: float) -> np.ndarray:
    """Indices of the coronal slices (axis 0) holding a voxel whose mask the cue decides.

    Under the paper rule a voxel is foreground when ``p3d > low`` where the cue is set and
    when ``p3d > high`` elsewhere, so the cue changes the mask only where
    ``min(low, high) < p3d <= max(low, high)``; on every other slice the 2D net need not run.
    """
    lo, hi = min(low, high), max(low, high)
    # slice by slice (strided views of the volume): no whole-volume temporaries
    keep = [bool(np.any((s > lo) & (s <= hi))) for s in p3d_coronal]
    return np.flatnonzero(np.array(keep, bool))


@dataclass(frozen=True)
class WindowPlan:
    """Sliding windows over a volume, in the coordinates of the unpadded volume.

    Attributes:
        shape: the volume's shape (z, y, x).
        patch: the window size.
        pads: (before, after) padding per axis when the volume is smaller than the patch.
        starts: start corners on the padded volume, of the windows to run.
        skipped: how many windows of the full grid were left out (no body voxel).
    """

    shape: tuple[int, int, int]
    patch: tuple[int, int, int]
    pads: tuple[tuple[int, int], ...]
    starts: tuple[tuple[int, int, int], ...]
    skipped: int

    def corner(self, start: tuple[int, int, int]) -> tuple[int, int, int]:
        """The window's first voxel in volume coordinates (negative where it overhangs)."""
        return tuple(s - before for s, (before, _) in zip(start, self.pads))

    def boxes(self, start: tuple[int, int, int]) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
        """(volume box, patch box): where a window lies in the volume, and which part of the
        window that is (the rest is padding)."""
        vol, sub = [], []
        for lo, p, n in zip(self.corner(start), self.patch, self.shape):
            hi = lo + p
            vol.append(slice(max(lo, 0), min(hi, n)))
            sub.append(slice(max(lo, 0) - lo, p - (hi - min(hi, n))))
        return tuple(vol), tuple(sub)


def plan_windows(shape: tuple[int, int, int], patch: tuple[int, int, int], step_fraction: float,
                 body: np.ndarray | None = None) -> WindowPlan:
    """The window plan of a volume; with ``body``, windows without a body voxel are left out."""
    shape, patch = tuple(int(n) for n in shape), tuple(int(p) for p in patch)
    pads = pad_amounts(shape, patch)
    padded = tuple(n + a + b for n, (a, b) in zip(shape, pads))
    grid = window_grid(padded, patch, step_fraction)
    plan = WindowPlan(shape, patch, pads, tuple(grid), 0)
    if body is None:
        return plan
    keep = tuple(s for s in grid if body[plan.boxes(s)[0]].any())
    return WindowPlan(shape, patch, pads, keep, len(grid) - len(keep))
