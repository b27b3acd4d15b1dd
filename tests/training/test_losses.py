import numpy as np
import pytest

torch = pytest.importorskip("torch")

from l2s_training.losses import DICE_SMOOTH, bce_dice_loss, loc_loss, lesion_pos_weight, seg_loss  # noqa: E402


def reference(logits, target, weight, lam=1.0, pos_weight=1.0):
    """Float64 numpy: weighted-mean BCE (lesion term x pos_weight) + lam * (1 - weighted soft Dice over the batch)."""
    x, g, w = (np.asarray(a, np.float64) for a in (logits, target, weight))
    p = 1 / (1 + np.exp(-x))
    bce = -(pos_weight * g * np.log(p) + (1 - g) * np.log(1 - p))
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


def test_l2_lesion_weight_against_numpy():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 1, 4, 5, 6)) * 3
    g = (rng.uniform(size=x.shape) > 0.95).astype(float)
    cue = rng.uniform(size=x.shape)
    got = seg_loss(torch.from_numpy(x), torch.from_numpy(g), torch.from_numpy(cue), 1.0, 25.0)
    assert float(got) == pytest.approx(reference(x, g, 1 + cue, 1.0, 25.0), rel=1e-5)


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


def test_l1_lesion_weight_against_numpy():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3, 1, 8, 8)) * 3
    g = (rng.uniform(size=x.shape) > 0.97).astype(float)
    got = loc_loss(torch.from_numpy(x), torch.from_numpy(g), 1.0, 40.0)
    assert float(got) == pytest.approx(reference(x, g, np.ones_like(x), 1.0, 40.0), rel=1e-5)
    # a lesion pixel at logit 0 adds 40 * log 2 / N to the BCE; the Dice term is unchanged
    z, one = torch.zeros(1, 1, 2, 2), torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    bce = lambda pw: float(loc_loss(z, one, 0.0, pw))  # noqa: E731
    assert bce(40.0) - bce(1.0) == pytest.approx(39 * np.log(2) / 4, rel=1e-6)
    assert float(loc_loss(z, one, 1.0, 40.0)) - bce(40.0) == pytest.approx(float(loc_loss(z, one, 1.0)) - bce(1.0), rel=1e-6)


def test_lesion_weight_is_sqrt_of_background_to_lesion_ratio():
    assert lesion_pos_weight(0.01) == pytest.approx(np.sqrt(99.0))
    assert lesion_pos_weight(1e-4) == pytest.approx(np.sqrt(9999.0))
    assert lesion_pos_weight(0.5) == 1.0 and lesion_pos_weight(0.9) == 1.0   # never below 1
    assert lesion_pos_weight(0.0) == 1.0 and lesion_pos_weight(1.0) == 1.0   # no lesion / no background: unweighted


def test_weighted_bce_balances_the_gradient_of_rare_lesions():
    """At the 1% prior, the summed BCE gradient of 1 lesion pixel in 10 000 is about 1/100 of
    the background's with unit weights, and about equal to it with the sqrt weight (~100)."""
    n, share = 10_000, 1e-4
    g = torch.zeros(n)
    g[0] = 1.0
    for pw, (low, high) in ((1.0, (0.005, 0.02)), (lesion_pos_weight(share), (0.5, 2.0))):
        x = torch.full((n,), -4.59512, requires_grad=True)
        loc_loss(x, g, 0.0, pw).backward()
        ratio = -float(x.grad[0]) / float(x.grad[1:].sum())
        assert low < ratio < high, (pw, ratio)
