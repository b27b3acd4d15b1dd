import math

import numpy as np
import pytest

from l2s_engine.metrics import aggregate, case_metrics

VV = 2.0 * 2.0 * 3.0 / 1000  # mL per voxel of a 2 x 2 x 3 mm grid


def empty(shape=(12, 12, 12)):
    return np.zeros(shape, np.uint8)


def test_overlapping_cubes():
    gt, pred = empty(), empty()
    gt[2:6, 2:6, 2:6] = 1
    pred[4:8, 4:8, 4:8] = 1
    m = case_metrics(pred, gt, VV)
    assert m.dice == pytest.approx(2 * 8 / (64 + 64))
    assert m.fpv_ml == 0.0 and m.fnv_ml == 0.0
    assert (m.gt_voxels, m.pred_voxels) == (64, 64)


def test_one_voxel_of_contact_clears_a_lesion_and_far_components_are_false_positives():
    gt, pred = empty(), empty()
    gt[1:4, 1:4, 1:4] = 1          # lesion A, 27 voxels
    gt[8:10, 8:10, 8:10] = 1       # lesion B, 8 voxels, missed
    pred[3, 3, 3] = 1              # touches A in exactly one voxel...
    pred[3, 3, 4:7] = 1            # ...and extends outside it: one component of 4 voxels
    pred[0, 10:12, 0] = 1          # a far component of 2 voxels
    m = case_metrics(pred, gt, VV)
    assert m.fnv_ml == pytest.approx(8 * VV)
    assert m.fpv_ml == pytest.approx(2 * VV)
    assert m.dice == pytest.approx(2 * 1 / (35 + 6))


def test_eighteen_connectivity_edges_join_corners_do_not():
    gt = empty()
    gt[5, 5, 5] = 1
    corner, edge = empty(), empty()
    corner[5, 5, 5] = corner[6, 6, 6] = 1   # corner contact only: two components
    edge[5, 5, 5] = edge[6, 6, 5] = 1       # edge contact: one component
    assert case_metrics(corner, gt, VV).fpv_ml == pytest.approx(1 * VV)
    assert case_metrics(edge, gt, VV).fpv_ml == 0.0
    # the same rule on the truth side: a lesion touched only by a corner is missed
    pred = empty()
    pred[4, 4, 4] = 1
    m = case_metrics(pred, gt, VV)
    assert m.fnv_ml == pytest.approx(VV) and m.fpv_ml == pytest.approx(VV) and m.dice == 0.0


def test_empty_prediction_and_empty_truth():
    gt, pred = empty(), empty()
    both_empty = case_metrics(pred, gt, VV, "neg-empty")
    assert math.isnan(both_empty.dice) and math.isnan(both_empty.fnv_ml) and both_empty.fpv_ml == 0.0
    assert both_empty.in_convention("all-cases") == (0.0, 0.0, 0.0)
    pred[0:2, 0, 0] = 1
    neg_fp = case_metrics(pred, gt, VV, "neg-fp")
    assert neg_fp.fpv_ml == pytest.approx(2 * VV) and math.isnan(neg_fp.dice)
    gt2 = empty()
    gt2[3:5, 3:5, 3:5] = 1
    missed = case_metrics(empty(), gt2, VV, "pos-missed")
    assert (missed.dice, missed.fpv_ml) == (0.0, 0.0) and missed.fnv_ml == pytest.approx(8 * VV)


def test_aggregate_conventions_by_hand():
    gt, pred = empty(), empty()
    gt[2:6, 2:6, 2:6] = 1
    pred[4:8, 4:8, 4:8] = 1
    pos = case_metrics(pred, gt, VV, "pos")                  # dice 0.125, fpv 0, fnv 0
    gt2 = empty()
    gt2[0:2, 0:2, 0:2] = 1
    missed = case_metrics(empty(), gt2, VV, "missed")        # dice 0, fpv 0, fnv 8 voxels
    fp = empty()
    fp[10, 10, 10:12] = 1
    neg = case_metrics(fp, empty(), VV, "neg")               # dice NaN, fpv 2 voxels, fnv NaN
    cases = [pos, missed, neg]
    p = aggregate(cases, "positive-only")
    assert p["dice"] == pytest.approx(0.125 / 2)
    assert p["fnv_ml"] == pytest.approx(8 * VV / 2)
    assert p["fpv_ml"] == pytest.approx(2 * VV / 3)
    assert (p["cases"], p["positive_cases"]) == (3, 2)
    a = aggregate(cases, "all-cases")
    assert a["dice"] == pytest.approx(0.125 / 3)
    assert a["fnv_ml"] == pytest.approx(8 * VV / 3)
    assert a["fpv_ml"] == pytest.approx(2 * VV / 3)
    assert math.isnan(aggregate([neg], "positive-only")["dice"])
    with pytest.raises(ValueError):
        aggregate(cases, "autopet4")


def _naive(pred, gt, vv):
    """The challenge scripts' loop, with scipy's labelling (18-connected) instead of cc3d."""
    from scipy import ndimage

    structure = ndimage.generate_binary_structure(3, 2)  # 18-connectivity

    def unmatched(a, b):
        labels, n = ndimage.label(a, structure=structure)
        return sum(int((labels == i).sum()) for i in range(1, n + 1) if not np.any(b[labels == i]))

    dice = 2.0 * np.sum(pred * gt) / (pred.sum() + gt.sum())
    return dice, unmatched(pred, gt) * vv, unmatched(gt, pred) * vv


@pytest.mark.parametrize("seed", range(5))
def test_random_masks_against_scipy_loop(seed):
    pytest.importorskip("scipy")
    rng = np.random.default_rng(seed)
    gt = (rng.uniform(size=(16, 14, 12)) > 0.85).astype(np.uint8)
    pred = (rng.uniform(size=(16, 14, 12)) > 0.85).astype(np.uint8)
    m = case_metrics(pred, gt, VV)
    dice, fpv, fnv = _naive(pred.astype(np.int64), gt.astype(np.int64), VV)
    assert m.dice == pytest.approx(dice) and m.fpv_ml == pytest.approx(fpv) and m.fnv_ml == pytest.approx(fnv)
    assert m.fpv_ml > 0 and m.fnv_ml > 0  # the random case exercises both sums


def test_shape_mismatch():
    with pytest.raises(ValueError, match="shape"):
        case_metrics(empty((3, 3, 3)), empty((3, 3, 4)), VV)


def test_mask_dice_on_a_hand_built_pair():
    from l2s_engine.metrics import mask_dice

    a = np.zeros((2, 3, 4), np.uint8)
    b = np.zeros((2, 3, 4), np.uint8)
    a[0, :, :2] = 255          # 6 voxels, any non-zero value is lesion
    b[0, 1:, 1:3] = 1          # 4 voxels; 2 of them shared with a
    assert mask_dice(a, b) == 2 * 2 / (6 + 4)
    assert mask_dice(a * 0, b * 0) == 1.0 and mask_dice(a * 0, b * 0, empty=None) is None
    assert mask_dice(a, b * 0) == 0.0
