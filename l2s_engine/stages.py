"""The network stages of one study on the host: 2D cue, 3D probabilities (numpy + a backend).

Each stage is a function from arrays to arrays, so the GPU path can replace them one by
one. Fold ensembles average probabilities; flip test-time augmentation averages the logits
of the mirrored inputs within one fold (as nnU-Net does).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import numpy as np

from .backends import Backend
from .geometry import Geometry
from .planning import WindowPlan, batches
from .preprocess import slices_from_output, slices_to_input, to_coronal
from .spec import Loc2DSpec
from .tiling import gaussian_weights


def sigmoid_(x: np.ndarray) -> np.ndarray:
    """Logistic function in place (float32; saturates to 0/1 without overflow warnings)."""
    np.negative(x, out=x)
    with np.errstate(over="ignore", under="ignore"):
        np.exp(x, out=x)
    x += 1.0
    np.reciprocal(x, out=x)
    return x


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


def host_runner(net: Backend) -> Callable[[np.ndarray], np.ndarray]:
    """``x -> logits`` of a one-input, one-output network on the host."""
    in_name, out_name = next(iter(net.input_specs)), net.output_names[0]
    return lambda x: net.infer({in_name: x})[out_name]


def mean_logits(run: Callable, x, flips: list[tuple[int, ...]]):
    """``run(x)``'s logits averaged over the mirrored inputs, as float32.

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


def run_loc2d(nets: Sequence[Backend], pet_2d: np.ndarray, geometry: Geometry, spec: Loc2DSpec,
              slices: np.ndarray | None = None, batch: int = 16, tta: bool = False,
              tick: Callable[[], object] | None = None) -> np.ndarray:
    """The location cue of a study: 2D-net probabilities stacked back onto its grid (z, y, x).

    Args:
        nets: one backend per fold (probabilities are averaged).
        pet_2d: PET normalised with the 2D spec, (z, y, x).
        slices: coronal slices to run (None: all); the others get a cue of 0.
        batch: slices per network call.
        tta: also run the slices mirrored left-right (``LOC2D_TTA_AXES``).
        tick: called after each batch (progress).
    """
    coronal = to_coronal(pet_2d, geometry)
    cue = np.zeros(pet_2d.shape, np.float32)
    cue_coronal = to_coronal(cue, geometry)  # a view: writing it fills ``cue``
    index = np.arange(coronal.shape[0]) if slices is None else np.asarray(slices)
    flips = flip_sets(LOC2D_TTA_AXES, tta)
    for group in batches(index, batch):
        x = slices_to_input(coronal, group, spec.resize, spec.crop, spec.in_slices)
        probs = np.zeros((len(group), *spec.slice_shape), np.float32)
        for net in nets:
            probs += sigmoid_(mean_logits(host_runner(net), x, flips)[:, 0])
        if len(nets) > 1:
            probs /= np.float32(len(nets))
        cue_coronal[group] = slices_from_output(probs, spec.resize, spec.crop, coronal.shape[1:])
        if tick:
            tick()
    return cue


def gather_windows(pet_3d: np.ndarray, ct_3d: np.ndarray, plan: WindowPlan,
                   starts: Sequence[tuple[int, int, int]], fill: float = -1.0) -> np.ndarray:
    """Network input for ``starts``: (N, 2, *patch) float32, ``fill`` where a window overhangs."""
    x = np.full((len(starts), 2, *plan.patch), fill, np.float32)
    for i, start in enumerate(starts):
        vol, sub = plan.boxes(start)
        x[(i, 0, *sub)] = pet_3d[vol]
        x[(i, 1, *sub)] = ct_3d[vol]
    return x


def weight_sum(plan: WindowPlan, weights: np.ndarray) -> np.ndarray:
    """Sum of the window weights over the volume (0 where no planned window reaches)."""
    wsum = np.zeros(plan.shape, np.float32)
    for start in plan.starts:
        vol, sub = plan.boxes(start)
        wsum[vol] += weights[sub]
    return wsum


def accumulate(acc: np.ndarray, logits: np.ndarray, weights: np.ndarray, plan: WindowPlan,
               starts: Sequence[tuple[int, int, int]]) -> None:
    """Add each window's weighted logits (N, *patch) into ``acc`` in place."""
    for logit, start in zip(logits, starts):
        vol, sub = plan.boxes(start)
        acc[vol] += logit[sub] * weights[sub]


def blend_(acc: np.ndarray, wsum: np.ndarray, slab: int = 16) -> np.ndarray:
    """``sigmoid(acc / wsum)`` in place in ``acc``; 0 where no window reached (wsum == 0).

    Slab by slab along axis 0, so the temporaries are a slab, not a volume.
    """
    for z in range(0, acc.shape[0], slab):
        a, w = acc[z:z + slab], wsum[z:z + slab]
        covered = w > 0
        np.divide(a, w, out=a, where=covered)
        sigmoid_(a)
        a[~covered] = 0.0
    return acc


def run_seg3d(nets: Sequence[Backend], pet_3d: np.ndarray, ct_3d: np.ndarray, plan: WindowPlan,
              batch: int = 2, tta: bool = False, weights: np.ndarray | None = None,
              tick: Callable[[], object] | None = None) -> np.ndarray:
    """3D-net lesion probabilities of a study: Gaussian-weighted logits of the planned windows.

    Per fold: ``p = sigmoid(sum(w * logit) / sum(w))`` over the windows covering a voxel;
    folds are averaged. A voxel that no planned window covers (all its windows were air)
    gets 0. Memory: the inputs plus three volumes (accumulator, weight sum, result).

    Args:
        nets: one backend per fold.
        pet_3d, ct_3d: PET and CT normalised with the 3D spec, (z, y, x).
        plan: the windows to run (``planning.plan_windows``).
        batch: windows per network call.
        tta: also run the windows mirrored along every subset of the three axes (8 passes).
        weights: the importance map (default: Gaussian, sigma = patch / 8).
        tick: called after each batch (progress).
    """
    weights = gaussian_weights(plan.patch) if weights is None else weights
    wsum = weight_sum(plan, weights)
    flips = flip_sets(SEG3D_TTA_AXES, tta)
    result = None
    for net in nets:
        acc = np.zeros(plan.shape, np.float32)
        for group in batches(list(plan.starts), batch):
            logits = mean_logits(host_runner(net), gather_windows(pet_3d, ct_3d, plan, group), flips)[:, 0]
            accumulate(acc, logits, weights, plan, group)
            if tick:
                tick()
        blend_(acc, wsum)
        if result is None:
            result = acc
        else:
            result += acc
        del acc
    if len(nets) > 1:
        result /= np.float32(len(nets))
    return result
