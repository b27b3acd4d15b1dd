"""The Table 1 script's four masks and its means, against hand-built maps and hand arithmetic."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from table1 import lesion_fates, masks_of, summarise  # noqa: E402

from l2s_engine.metrics import CaseMetrics  # noqa: E402
from l2s_engine.spec import FusionSpec  # noqa: E402


def test_masks_follow_each_method_rule():
    rng = np.random.default_rng(0)
    p3d = rng.uniform(size=(9, 11, 13)).astype(np.float32)
    cue = rng.uniform(size=p3d.shape).astype(np.float32)
    got = masks_of(p3d, cue, FusionSpec())
    np.testing.assert_array_equal(got["2D alone"], cue > 0.5)
    np.testing.assert_array_equal(got["3D alone"], p3d > 0.5)
    np.testing.assert_array_equal(got["L2SNet"], np.where(cue > 0.5, p3d > 0.1, p3d > 0.5))
    # the cue only ever lowers the threshold: L2SNet holds 3D alone, and differs only under the cue
    assert (got["L2SNet"] >= got["3D alone"]).all()
    assert not ((got["L2SNet"] != got["3D alone"]) & (cue <= 0.5)).any()


def test_summary_means_dice_and_fnv_over_positives_and_fpv_over_all():
    nan = float("nan")
    cases = [CaseMetrics("a", 10, 8, 0.8, 1.0, 0.5), CaseMetrics("b", 20, 0, 0.0, 0.0, 3.0),
             CaseMetrics("c", 0, 5, nan, 2.0, nan)]  # a lesion-free study: Dice and FNV are n/a
    got = summarise({"m": cases})["m"]
    assert got["dice_positive"] == pytest.approx((0.8 + 0.0) / 2)
    assert got["fnv_ml_positive"] == pytest.approx((0.5 + 3.0) / 2)
    assert got["fpv_ml_all"] == pytest.approx((1.0 + 0.0 + 2.0) / 3)
    assert got["all-cases"]["dice"] == pytest.approx((0.8 + 0.0 + 0.0) / 3)


def test_lesion_fates_under_the_paper_rule():
    """Four hand-placed lesions, one per fate; the rule's thresholds are 0.5 / 0.1 / cue 0.5."""
    seg = np.zeros((6, 20, 20), np.uint8)
    p3d = np.zeros(seg.shape, np.float32)
    cue = np.zeros(seg.shape, np.float32)
    found, rescued, unlit, faint = (slice(1, 3), slice(1, 4), slice(1, 4)), (slice(1, 3), slice(8, 10), slice(1, 4)), \
        (slice(1, 3), slice(14, 16), slice(1, 4)), (4, slice(10, 12), slice(10, 12))
    for lesion in (found, rescued, unlit, faint):
        seg[lesion] = 1
    p3d[2, 2, 2] = 0.6                      # found: one voxel > 0.5
    p3d[1, 8, 1], cue[1, 8, 1] = 0.3, 0.9   # rescued: p3d in (0.1, 0.5] and the cue on the same voxel
    p3d[1, 14, 1], cue[2, 15, 3] = 0.3, 0.9  # within reach, but the cue is on another of its voxels
    p3d[faint], cue[faint] = 0.1, 1.0       # out of reach: p3d 0.1 is not > 0.1
    got = sorted(lesion_fates(seg, p3d, cue, FusionSpec()), key=lambda f: f[0])
    assert got == sorted([("found by 3D alone", 18), ("rescued by the cue", 12), ("within reach, no cue", 12),
                          ("out of reach", 4)])
    # the definition matches the masks: rescued lesions are exactly those L2SNet touches and 3D alone does not
    masks = masks_of(p3d, cue, FusionSpec())
    assert masks["L2SNet"][rescued].any() and not masks["3D alone"][rescued].any()
    assert not masks["L2SNet"][unlit].any() and not masks["L2SNet"][faint].any()
