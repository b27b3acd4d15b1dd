"""The host stages against float64 references built independently (explicit padding, loops)."""

import numpy as np
import pytest

from l2s_engine.geometry import Geometry
from l2s_engine.planning import plan_windows
from l2s_engine.preprocess import slices_from_output, slices_to_input, to_coronal
from l2s_engine.spec import preset
from l2s_engine.planning import batches
from l2s_engine.stages import run_loc2d, run_seg3d, sigmoid_
from l2s_engine.tiling import gaussian_weights, pad_amounts, window_grid

from .fakes import FakeBackend, fake_logits

PATCH = (16, 24, 16)


def reference_p3d(pet, ct, patch, step, scales=(1.0,), flips=((),), weights=None):
    """Pad the volume, run every window (float64), blend logits, sigmoid, average folds, crop."""
    pads = pad_amounts(pet.shape, patch)
    x = np.stack([np.pad(pet, pads, constant_values=-1.0), np.pad(ct, pads, constant_values=-1.0)]).astype(np.float64)
    w = (gaussian_weights(patch) if weights is None else weights).astype(np.float64)
    probs = []
    for scale in scales:
        acc, wsum = np.zeros(x.shape[1:]), np.zeros(x.shape[1:])
        for s in window_grid(x.shape[1:], patch, step):
            box = tuple(slice(a, a + p) for a, p in zip(s, patch))
            win = x[(slice(None), *box)][None]
            logit = np.mean([np.flip(fake_logits(np.flip(win, f), scale), f) for f in flips], axis=0)[0, 0]
            acc[box] += logit * w
            wsum[box] += w
        probs.append(1.0 / (1.0 + np.exp(-acc / wsum)))
    inner = tuple(slice(a, a + n) for (a, _), n in zip(pads, pet.shape))
    return np.mean(probs, axis=0)[inner]


@pytest.fixture
def volume():
    rng = np.random.default_rng(3)
    shape = (13, 50, 37)  # odd sizes; axis 0 shorter than the patch
    return rng.uniform(-1, 1, shape).astype(np.float32), rng.uniform(-1, 1, shape).astype(np.float32)


@pytest.mark.parametrize("batch", [1, 3])
def test_seg3d_blend_equals_padded_float64_reference(volume, batch):
    pet, ct = volume
    net = FakeBackend((1, 2, *PATCH))
    with net:
        plan = plan_windows(pet.shape, PATCH, 0.5)
        got = run_seg3d([net], pet, ct, plan, batches(plan.starts, batch))
    np.testing.assert_allclose(got, reference_p3d(pet, ct, PATCH, 0.5), atol=2e-6, rtol=0)


def test_seg3d_folds_average_probabilities_and_tta_averages_mirrored_logits(volume):
    pet, ct = volume
    nets = [FakeBackend((1, 2, *PATCH), scale) for scale in (1.0, 0.3)]
    flips = [(), (2,), (3,), (4,), (2, 3), (2, 4), (3, 4), (2, 3, 4)]
    for n in nets:
        n.activate()
    plan = plan_windows(pet.shape, PATCH, 0.5)
    got = run_seg3d(nets, pet, ct, plan, batches(plan.starts, 2), tta=True)
    ref = reference_p3d(pet, ct, PATCH, 0.5, scales=(1.0, 0.3), flips=flips)
    np.testing.assert_allclose(got, ref, atol=2e-6, rtol=0)
    # and the mirrored passes really ran: 8 per batch
    assert nets[0].calls == 8 * -(-len(plan_windows(pet.shape, PATCH, 0.5).starts) // 2)


def test_seg3d_uncovered_voxels_get_zero():
    shape = (16, 48, 16)
    body = np.zeros(shape, bool)
    body[:, :14] = True  # windows at y = 0 and 12 (step 12) hold body; y = 24 does not
    plan = plan_windows(shape, PATCH, 0.5, body)
    assert plan.skipped == 1
    with FakeBackend((1, 2, *PATCH)) as net:
        got = run_seg3d([net], np.zeros(shape, np.float32), np.zeros(shape, np.float32), plan, [plan.starts])
    assert (got[:, 36:] == 0).all() and (got[:, :36] > 0).all()


def test_seg3d_equals_monai_sliding_window_with_its_importance_map():
    torch = pytest.importorskip("torch")
    inferers = pytest.importorskip("monai.inferers")
    from monai.data.utils import compute_importance_map

    rng = np.random.default_rng(5)
    shape = (32, 48, 24)  # starts coincide: MONAI's interval int(0.5 p) == our evenly spread step
    pet, ct = (rng.uniform(-1, 1, shape).astype(np.float32) for _ in range(2))
    x = torch.from_numpy(np.stack([pet, ct])[None])
    monai = inferers.sliding_window_inference(
        x, PATCH, 4, lambda w: torch.from_numpy(fake_logits(w.numpy()).astype(np.float32)),
        overlap=0.5, mode="gaussian", sigma_scale=0.125)
    monai_p = torch.sigmoid(monai)[0, 0].double().numpy()
    monai_map = compute_importance_map(PATCH, mode="gaussian", sigma_scale=0.125).numpy().astype(np.float32)
    with FakeBackend((1, 2, *PATCH)) as net:
        plan = plan_windows(shape, PATCH, 0.5)
        got = run_seg3d([net], pet, ct, plan, batches(plan.starts, 4), weights=monai_map)
    np.testing.assert_allclose(got, monai_p, atol=1e-5, rtol=0)
    # the one deliberate difference: MONAI floors its map at 1e-3, ours at its smallest value
    ours = gaussian_weights(PATCH)
    above = monai_map > 1e-3
    np.testing.assert_allclose(ours[above] / ours.max(), monai_map[above] / monai_map.max(), rtol=1e-5)


def test_loc2d_cue_equals_reference_and_skipped_slices_are_zero():
    spec = preset("lite").loc2d
    geometry = Geometry(size=(30, 9, 41), spacing=(4.0, 4.0, 5.0), origin=(0.0, 0.0, 0.0),
                        direction=(1, 0, 0, 0, 1, 0, 0, 0, 1))
    rng = np.random.default_rng(1)
    pet = rng.uniform(-1, 1, geometry.shape).astype(np.float32)
    net = FakeBackend((1, spec.in_slices, *spec.slice_shape))
    keep = np.array([0, 2, 3, 7, 8])
    with net:
        cue = run_loc2d([net], pet, geometry, spec, batches(keep, 2))
    coronal = to_coronal(pet, geometry)  # (9, 41, 30): y is the coronal axis here
    x = slices_to_input(coronal, keep, spec.resize, spec.crop, spec.in_slices)
    probs = 1.0 / (1.0 + np.exp(-fake_logits(x)[:, 0]))
    ref = np.zeros(coronal.shape)
    ref[keep] = slices_from_output(probs.astype(np.float32), spec.resize, spec.crop, coronal.shape[1:])
    got = to_coronal(cue, geometry)
    np.testing.assert_allclose(got, ref, atol=1e-6)
    assert not got[[1, 4, 5, 6]].any()


def test_loc2d_tta_mirrors_left_right_only():
    """The 2D net is trained with left-right flips only; TTA averages the logits of the slice and
    its left-right mirror (the fake net's ramp is not symmetric, so a head-foot pass would show)."""
    spec = preset("lite").loc2d
    geometry = Geometry(size=(30, 9, 41), spacing=(4.0, 4.0, 5.0), origin=(0.0, 0.0, 0.0),
                        direction=(1, 0, 0, 0, 1, 0, 0, 0, 1))
    pet = np.random.default_rng(2).uniform(-1, 1, geometry.shape).astype(np.float32)
    keep = np.array([1, 4, 5])
    net = FakeBackend((1, spec.in_slices, *spec.slice_shape))
    with net:
        cue = run_loc2d([net], pet, geometry, spec, batches(keep, 3), tta=True)
    x = slices_to_input(to_coronal(pet, geometry), keep, spec.resize, spec.crop, spec.in_slices).astype(np.float64)
    cols = 3  # (batch, channels, rows = head-foot, cols = lateral)
    logits = (fake_logits(x) + np.flip(fake_logits(np.flip(x, cols)), cols)) / 2.0
    head_foot = np.flip(fake_logits(np.flip(x, 2)), 2)
    assert np.abs(head_foot - fake_logits(x)).max() > 0.1  # a head-foot pass would change the result
    probs = 1.0 / (1.0 + np.exp(-logits[:, 0]))
    ref = slices_from_output(probs.astype(np.float32), spec.resize, spec.crop, to_coronal(pet, geometry).shape[1:])
    np.testing.assert_allclose(to_coronal(cue, geometry)[keep], ref, atol=1e-6)
    assert net.calls == 2


def test_sigmoid_saturates_without_warnings():
    x = np.array([-1000.0, -5.0, 0.0, 5.0, 1000.0], np.float32)
    with np.errstate(all="raise"):
        got = sigmoid_(x.copy())
    np.testing.assert_allclose(got, 1.0 / (1.0 + np.exp(-x.astype(np.float64).clip(-700, 700))), atol=1e-7)
