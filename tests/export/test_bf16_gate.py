"""The bf16 gate's verdict on hand-built per-study rows."""

import pytest

pytest.importorskip("torch")

from l2s_export.bf16_gate import _verdict, dice  # noqa: E402

import numpy as np  # noqa: E402

FACTS = {"isa": "AMX-BF16"}


def _row(case, d, voxels=100, diff=0.01):
    return {"case_id": case, "dice": d, "voxels_fp32": voxels, "voxels_bf16": voxels, "max_abs_prob_diff": diff}


def test_passes_only_when_every_study_is_within_the_limit():
    ok = _verdict(FACTS, [_row("a", 1.0), _row("b", 0.996, diff=0.2)])
    assert ok["passed"] and ok["min_dice"] == 0.996 and ok["max_abs_prob_diff"] == 0.2
    bad = _verdict(FACTS, [_row("a", 1.0), _row("b", 0.99)])
    assert not bad["passed"] and "0.9900" in bad["reason"] and "b" in bad["reason"]


def test_an_all_empty_check_set_proves_nothing():
    verdict = _verdict(FACTS, [_row("a", 1.0, voxels=0), _row("b", 1.0, voxels=0)])
    assert not verdict["passed"] and "nothing compared" in verdict["reason"]


def test_dice_of_hand_built_masks():
    a = np.zeros((4, 4), bool)
    b = a.copy()
    assert dice(a, b) == 1.0
    a[0, :2] = True
    b[0, 1:3] = True
    assert dice(a, b) == pytest.approx(2 * 1 / 4)
