"""Each kernel against its numpy twin of the host path, for any ``Kernels`` (CPU build or CuPy).

Inputs are random, of odd sizes (no size a multiple of a block), through strided views
where the pipeline uses them. Kernels whose arithmetic the host does in float32 must match
bit for bit; those with an exponential match within float32 rounding of ``exp``.
"""

from __future__ import annotations

import numpy as np

from l2s_engine.cuda.kernels import Kernels
from l2s_engine.geometry import Geometry
from l2s_engine.planning import plan_windows
from l2s_engine.postprocess import fuse_paper
from l2s_engine.resample import grid_map, resample
from l2s_engine.preprocess import (
    intensity_window,
    slice_context,
    slices_from_output,
    slices_to_input,
    to_coronal,
)
from l2s_engine.spec import FusionSpec
from l2s_engine.stages import accumulate, blend_, gather_windows, sigmoid_, weight_sum
from l2s_engine.tiling import gaussian_weights

# a grid whose coronal axis is not the first numpy axis, so the coronal view is strided
GEOMETRY = Geometry(size=(23, 29, 41), spacing=(2.0, 3.0, 4.0), origin=(0.0, 0.0, 0.0),
                    direction=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
ODD = 100_003  # elements of the flat tests


def to_host(a) -> np.ndarray:
    return a.get() if hasattr(a, "get") else np.asarray(a)


def check_normalise(k: Kernels) -> None:
    rng = np.random.default_rng(0)
    suv = rng.uniform(-2.0, 25.0, ODD).astype(np.float32)
    out = k.xp.empty(ODD, np.float32)
    k.normalise(k.xp.asarray(suv), 0.0, 15.0, out)
    np.testing.assert_array_equal(to_host(out), intensity_window(suv, 0.0, 15.0))


def check_resize_slices(k: Kernels, resize=(40, 18), crop=(3, 37, 2, 17), in_slices=3) -> None:
    rng = np.random.default_rng(1)
    volume = rng.normal(size=GEOMETRY.shape).astype(np.float32)
    coronal = to_coronal(volume, GEOMETRY)
    index = np.array([0, 4, 5, coronal.shape[0] - 1])
    expected = slices_to_input(coronal, index, resize, crop, in_slices)
    dev = k.xp.asarray(volume)
    src = k.xp.asarray(slice_context(coronal.shape[0], index, in_slices).ravel().astype(np.int32))
    out = k.xp.empty((len(index) * in_slices, crop[1] - crop[0], crop[3] - crop[2]), np.float32)
    k.resize_slices(to_coronal(dev, GEOMETRY), src, resize, crop, out)
    np.testing.assert_array_equal(to_host(out).reshape(expected.shape), expected)


def check_scatter_slices(k: Kernels, resize=(40, 18), crop=(3, 37, 2, 17)) -> None:
    rng = np.random.default_rng(2)
    coronal_shape = to_coronal(np.empty(GEOMETRY.shape), GEOMETRY).shape
    index = np.array([1, 2, 7, coronal_shape[0] - 1])
    probs = rng.uniform(size=(len(index), crop[1] - crop[0], crop[3] - crop[2])).astype(np.float32)
    expected = np.zeros(GEOMETRY.shape, np.float32)
    to_coronal(expected, GEOMETRY)[index] = slices_from_output(probs, resize, crop, coronal_shape[1:])
    cue = k.xp.zeros(GEOMETRY.shape, np.float32)
    k.scatter_slices(k.xp.asarray(probs), resize, crop, k.xp.asarray(index.astype(np.int32)),
                     to_coronal(cue, GEOMETRY))
    np.testing.assert_array_equal(to_host(cue), expected)


def check_add_sigmoid(k: Kernels) -> None:
    rng = np.random.default_rng(3)
    logits = rng.normal(0.0, 8.0, ODD).astype(np.float32)
    base = rng.uniform(size=ODD).astype(np.float32)
    probs = k.xp.array(base)  # a copy on either device
    k.add_sigmoid(k.xp.asarray(logits), probs)
    expected = base + sigmoid_(logits.copy())
    np.testing.assert_allclose(to_host(probs), expected, rtol=2e-7, atol=1.2e-7)


def _plan(shape=(29, 41, 17), patch=(16, 24, 20)):
    # axis 2 shorter than the patch: windows overhang (padding)
    return plan_windows(shape, patch, 0.5)


def _corners(plan, starts) -> np.ndarray:
    return np.array([plan.corner(start) for start in starts], np.int32)


def check_gather_windows(k: Kernels) -> None:
    rng = np.random.default_rng(4)
    plan = _plan()
    pet, ct = (rng.normal(size=plan.shape).astype(np.float32) for _ in range(2))
    starts = list(plan.starts)[:5]
    expected = gather_windows(pet, ct, plan, starts, fill=-1.0)
    out = k.xp.empty(expected.shape, np.float32)
    k.gather_windows(k.xp.asarray(pet), k.xp.asarray(ct), k.xp.asarray(_corners(plan, starts)), plan.patch, -1.0, out)
    np.testing.assert_array_equal(to_host(out), expected)


def check_accumulate(k: Kernels) -> None:
    rng = np.random.default_rng(5)
    plan = _plan()
    weights = gaussian_weights(plan.patch)
    logits = rng.normal(0.0, 4.0, (len(plan.starts), *plan.patch)).astype(np.float32)
    expected = np.zeros(plan.shape, np.float32)
    accumulate(expected, logits, weights, plan, plan.starts)
    acc, wsum, w = k.xp.zeros(plan.shape, np.float32), k.xp.zeros(plan.shape, np.float32), k.xp.asarray(weights)
    dev_logits = k.xp.asarray(logits)
    for i, corner in enumerate(_corners(plan, plan.starts)):
        k.accumulate_window(acc, dev_logits[i], w, tuple(int(c) for c in corner))
        k.accumulate_window(wsum, None, w, tuple(int(c) for c in corner))
    np.testing.assert_array_equal(to_host(acc), expected)
    np.testing.assert_array_equal(to_host(wsum), weight_sum(plan, weights))


def _fusion_inputs(seed: int, shape=(37, 29, 93)):
    rng = np.random.default_rng(seed)
    acc = rng.normal(0.0, 6.0, shape).astype(np.float32)
    wsum = rng.uniform(0.01, 3.0, shape).astype(np.float32)
    wsum[rng.uniform(size=shape) < 0.05] = 0.0
    acc[wsum == 0] = 0.0  # as in the pipeline: no window, no logits
    cue = rng.uniform(size=shape).astype(np.float32)
    return acc, wsum, cue


FUSION = FusionSpec()


def check_fuse_threshold(k: Kernels) -> None:
    """The host's rule, p > t, on p = sigmoid(acc / wsum): against float64, and exactly on the
    kernel's own p (the decision is taken on the p it writes, not on logits)."""
    acc, wsum, cue = _fusion_inputs(6)
    covered = wsum > 0
    p64 = np.zeros(acc.shape)
    p64[covered] = 1.0 / (1.0 + np.exp(-(acc[covered].astype(np.float64) / wsum[covered])))
    t = np.where(cue > FUSION.cue_threshold, FUSION.low_threshold, FUSION.high_threshold)
    expected_p = blend_(acc.copy(), wsum)  # the host's float32 blend
    xp = k.xp
    p, mask = xp.empty(acc.shape, np.float32), xp.empty(acc.shape, np.uint8)
    k.fuse_threshold(xp.asarray(acc), xp.asarray(wsum), xp.asarray(cue), p, mask, FUSION.cue_threshold,
                     FUSION.low_threshold, FUSION.high_threshold)
    got_p, got_mask = to_host(p), to_host(mask)
    np.testing.assert_allclose(got_p, p64, rtol=3e-7, atol=1e-7)
    np.testing.assert_allclose(got_p, expected_p, rtol=3e-7, atol=1e-7)
    np.testing.assert_array_equal(got_mask, fuse_paper(got_p, cue, FUSION))  # one rule: p > t on its own p
    clear = np.abs(p64 - t) > 1e-6  # away from float ties, the float64 truth
    assert clear.mean() > 0.99
    np.testing.assert_array_equal(got_mask[clear], (p64 > t)[clear].astype(np.uint8))
    assert got_mask[~covered].max() == 0
    mask_only = xp.empty(acc.shape, np.uint8)
    k.fuse_threshold(xp.asarray(acc), xp.asarray(wsum), xp.asarray(cue), None, mask_only, FUSION.cue_threshold,
                     FUSION.low_threshold, FUSION.high_threshold)
    np.testing.assert_array_equal(to_host(mask_only), got_mask)


def check_fold_mean(k: Kernels, folds: int = 3) -> None:
    xp = k.xp
    cue = _fusion_inputs(7)[2]
    psum, expected = xp.zeros(cue.shape, np.float32), np.zeros(cue.shape, np.float32)
    for fold in range(folds):
        acc, wsum, _ = _fusion_inputs(10 + fold)
        k.add_probability(xp.asarray(acc), xp.asarray(wsum), psum)
        expected += blend_(acc, wsum)
    expected /= np.float32(folds)
    mask = xp.empty(cue.shape, np.uint8)
    k.threshold_mean(psum, xp.asarray(cue), mask, folds, FUSION.cue_threshold, FUSION.low_threshold,
                     FUSION.high_threshold)
    got = to_host(psum)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=2e-7)
    np.testing.assert_array_equal(to_host(mask), fuse_paper(got, cue, FUSION))


def check_resample(k: Kernels) -> None:
    """Both interpolations, up and down, with and without a kept axis, onto the network grid
    and back: bit for bit the numpy passes."""
    rng = np.random.default_rng(8)
    native = Geometry(size=(41, 29, 23), spacing=(2.0364, 2.0364, 3.0), origin=(5.0, -3.0, 40.0),
                      direction=(-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0))
    volume = rng.uniform(-1000.0, 3000.0, native.shape).astype(np.float32)
    for network_zyx, axes in (((6.1, 4.2, 4.2), (True, True, True)), ((2.2, 2.0364, 1.3), (True, False, True)),
                              ((1.7, 3.3, 2.0364), (True, True, False))):
        grid = grid_map(native, network_zyx)
        assert grid.axes == axes
        for order in ("linear", "cubic"):
            expected = resample(volume, grid.tables("to_network", order))
            out = k.xp.empty(grid.network.shape, np.float32)
            k.resample(k.xp.asarray(volume), k.grid_tables(grid, "to_network", order), order, out)
            np.testing.assert_array_equal(to_host(out), expected)
        maps = rng.uniform(size=grid.network.shape).astype(np.float32)
        back = k.xp.empty(native.shape, np.float32)
        k.resample(k.xp.asarray(maps), k.grid_tables(grid, "to_native", "linear"), "linear", back)
        np.testing.assert_array_equal(to_host(back), grid.to_native(maps))


CHECKS = [check_normalise, check_resize_slices, check_scatter_slices, check_add_sigmoid, check_gather_windows,
          check_accumulate, check_fuse_threshold, check_fold_mean, check_resample]
