import numpy as np
import pytest

torch = pytest.importorskip("torch")

from l2s_training.losses import DICE_SMOOTH, bce_dice_loss, loc_loss, seg_loss  # noqa: E402


def reference(logits, target, weight, lam=1.0):
    """Float64 numpy: weighted-mean BCE + lam * (1 - weighted soft Dice over the batch)."""
    x, g, w = (np.asarray(a, np.float64) for a in (logits, target, weight))
    p = 1 / (1 + np.exp(-x))
    bce = -(g * np.log(p) + (1 - g) * np.log(1 - p))
    dice = (2 * np.sum(w * p * g) + DICE_SMOOTH) / (np.sum(w * p) + np.sum(w * g) + DICE_SMOOTH)
    return np.sum(w * bce) / np.sum(w) + lam * (1 - dice)


def test_l1_against_numpy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 1, 8, 8))
    g = (rng.uniform(size=x.shape) > 0.8).astype(float)
    got = loc_loss(torch.from_numpy(x), torch.from_numpy(g))
    assert float(got) == pytest.approx(reference(x, g, np.ones_like(x)), rel=1e-5)
    got = bce_dice_loss(torch.from_numpy(x), torch.from_numpy(g), dice_weight=0.3)
    assert float(got) == pytest.approx(reference(x, g, np.ones_like(x), 0.3), rel=1e-5)


def test_l2_weights_by_one_plus_cue_against_numpy():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 1, 4, 5, 6))
    g = (rng.uniform(size=x.shape) > 0.7).astype(float)
    cue = rng.uniform(size=x.shape)
    got = seg_loss(torch.from_numpy(x), torch.from_numpy(g), torch.from_numpy(cue))
    assert float(got) == pytest.approx(reference(x, g, 1 + cue), rel=1e-5)


def test_a_voxel_with_cue_one_counts_as_two_voxels_with_cue_zero():
    x = torch.tensor([0.3, -1.2, 2.0, -0.4])
    g = torch.tensor([1.0, 0.0, 1.0, 0.0])
    cue = torch.tensor([1.0, 0.0, 0.0, 0.0])       # voxel 0 located by the 2D net
    weighted = seg_loss(x, g, cue)
    duplicated = seg_loss(torch.cat([x, x[:1]]), torch.cat([g, g[:1]]), torch.zeros(5))
    assert float(weighted) == pytest.approx(float(duplicated), rel=1e-6)
    assert float(weighted) != pytest.approx(float(seg_loss(x, g, torch.zeros(4))), rel=1e-3)


def test_perfect_prediction_scores_near_zero():
    g = torch.tensor([1.0, 0.0, 1.0, 0.0])
    assert float(loc_loss((g * 2 - 1) * 30, g)) < 1e-6
