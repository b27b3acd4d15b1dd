"""The network stages of one study on the host: 2D cue, 3D probabilities (numpy + a backend).

Each stage is a function from arrays to arrays, run over the batches of the study's plan
(``core.StudyPlan``), as the device executor runs them; folds and flip TTA are combined by
``ensemble``, which both executors share.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from .backends import Backend
from .geometry import Geometry
from .ensemble import LOC2D_TTA_AXES, SEG3D_TTA_AXES, flip_sets, mean_logits, mean_probability
from .planning import WindowPlan
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


def host_runner(net: Backend) -> Callable[[np.ndarray], np.ndarray]:
    """``x -> logits`` of a one-input, one-output network on the host."""
    in_name, out_name = next(iter(net.input_specs)), net.output_names[0]
    return lambda x: net.infer({in_name: x})[out_name]


def _add_sigmoid(logits: np.ndarray, out: np.ndarray) -> None:
    out += sigmoid_(logits)


def run_loc2d(nets: Sequence[Backend], pet_2d: np.ndarray, geometry: Geometry, spec: Loc2DSpec,
              slice_batches: Sequence[np.ndarray], tta: bool = False,
              tick: Callable[[], object] | None = None) -> np.ndarray:
    """The location cue of a study: 2D-net probabilities stacked back onto its grid (z, y, x).

    Args:
        nets: one backend per fold (probabilities are averaged).
        pet_2d: PET normalised with the 2D spec, (z, y, x).
        slice_batches: the coronal slices to run, one array per network call
            (``StudyPlan.slice_batches``); the other slices get a cue of 0.
        tta: also run the slices mirrored left-right (``LOC2D_TTA_AXES``).
        tick: called after each batch (progress).
    """
    coronal = to_coronal(pet_2d, geometry)
    cue = np.zeros(pet_2d.shape, np.float32)
    cue_coronal = to_coronal(cue, geometry)  # a view: writing it fills ``cue``
    flips, runs = flip_sets(LOC2D_TTA_AXES, tta), [host_runner(net) for net in nets]
    for group in slice_batches:
        x = slices_to_input(coronal, group, spec.resize, spec.crop, spec.in_slices)
        probs = mean_probability(runs, x, flips, _add_sigmoid, np.zeros((len(group), *spec.slice_shape), np.float32))
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
              window_batches: Sequence[Sequence[tuple[int, int, int]]], tta: bool = False,
              weights: np.ndarray | None = None, tick: Callable[[], object] | None = None) -> np.ndarray:
    """3D-net lesion probabilities of a study: Gaussian-weighted logits of the planned windows.

    Per fold: ``p = sigmoid(sum(w * logit) / sum(w))`` over the windows covering a voxel;
    folds are averaged. A voxel that no planned window covers (all its windows were air)
    gets 0. Memory: the inputs plus three volumes (accumulator, weight sum, result).

    Args:
        nets: one backend per fold.
        pet_3d, ct_3d: PET and CT normalised with the 3D spec, (z, y, x).
        plan: the windows (``planning.plan_windows``).
        window_batches: ``plan``'s window starts, one list per network call
            (``StudyPlan.window_batches``).
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
        for group in window_batches:
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
