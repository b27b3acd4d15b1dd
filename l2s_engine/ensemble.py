"""Fold ensembles and flip test-time augmentation, for both executors (numpy or CuPy arrays).

Within one fold, flip TTA averages the logits of the mirrored inputs (as nnU-Net does);
across folds, probabilities are averaged. The functions take the array operations they need
as arguments, so the host (numpy) and the device (CuPy, kernels.cu) run the same schedule.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import numpy as np

# The 2D net is trained with left-right flips only (training/augment.py flips the slice's
# width, its lateral axis): a head-foot mirrored body is an input it has never seen, so test-time
# augmentation mirrors that axis alone (axis 3 of a (batch, channels, rows, cols) batch).
LOC2D_TTA_AXES = (3,)
SEG3D_TTA_AXES = (2, 3, 4)


def flip_sets(spatial_axes: Sequence[int], tta: bool) -> list[tuple[int, ...]]:
    """The mirrorings to run: only the identity, or every subset of ``spatial_axes``."""
    if not tta:
        return [()]
    return [c for r in range(len(spatial_axes) + 1) for c in itertools.combinations(spatial_axes, r)]


def mean_logits(run: Callable, x, flips: list[tuple[int, ...]]):
    """``run(x)``'s logits averaged over the mirrored inputs, as a new float32 array.

    Array-module agnostic (numpy on the host, CuPy on the device): ``run`` maps an input
    batch to the network's logits.
    """
    total = None
    for axes in flips:
        xin = np.flip(x, axes).copy() if axes else x
        out = run(xin)
        out = np.flip(out, axes) if axes else out
        total = out.astype(np.float32, copy=True) if total is None else total + out
    if len(flips) > 1:
        total /= np.float32(len(flips))
    return total


def mean_probability(runs: Sequence[Callable], x, flips: list[tuple[int, ...]],
                     add_sigmoid: Callable[[object, object], object], out):
    """The fold mean of ``sigmoid(mean_logits(run, x, flips))`` of a one-channel network, into
    ``out`` (zeros, shaped as the logits without their channel axis).

    Args:
        runs: one ``x -> logits`` per fold.
        add_sigmoid: ``add_sigmoid(logits, out)`` adds ``sigmoid(logits)`` to ``out`` in place
            (it may overwrite ``logits``, a temporary).
    """
    for run in runs:
        add_sigmoid(mean_logits(run, x, flips)[:, 0], out)
    if len(runs) > 1:
        out /= np.float32(len(runs))
    return out
