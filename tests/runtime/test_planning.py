import numpy as np
import pytest

from l2s_engine.planning import batches, body_mask, occupied_slices, plan_windows, undecided_slices
from l2s_engine.tiling import window_starts


def test_body_mask_is_tissue_in_ct_or_activity_in_pet():
    ct = np.array([-1000.0, -600.0, -400.0, 40.0, -1000.0])
    pet = np.array([0.0, 0.1, 0.0, 0.0, 2.0])
    assert body_mask(pet, ct).tolist() == [False, False, True, True, True]


def test_batches_cover_in_order():
    assert [list(b) for b in batches(np.arange(7), 3)] == [[0, 1, 2], [3, 4, 5], [6]]
    with pytest.raises(ValueError):
        batches([1], 0)


def test_occupied_slices():
    body = np.zeros((5, 3, 4), bool)
    body[1, 2, 3] = body[3, 0, 0] = True
    assert occupied_slices(body).tolist() == [1, 3]


def test_undecided_slices_hold_a_voxel_between_the_thresholds():
    stack = np.zeros((6, 2, 3), np.float32)
    for i, value in enumerate((0.05, 0.3, 0.5, 0.6, 0.1, 0.9)):
        stack[i, 1, 2] = value  # one voxel per slice; 0.1 and 0.5 themselves: p > 0.1 vs p > 0.5
    assert undecided_slices(stack, 0.1, 0.5).tolist() == [1, 2]
    assert undecided_slices(stack, 0.5, 0.1).tolist() == [1, 2]  # a cue that raises the threshold
    assert undecided_slices(stack, 0.5, 0.5).tolist() == []      # thresholds equal: the cue never matters
    # a strided view (as to_coronal gives) reads the same
    assert undecided_slices(np.transpose(stack, (1, 0, 2)).copy().transpose(1, 0, 2), 0.1, 0.5).tolist() == [1, 2]


def test_plan_covers_volume_and_boxes_match_padding():
    shape, patch = (40, 100, 70), (64, 64, 64)  # axis 0 shorter than the patch: padded 12 + 12
    plan = plan_windows(shape, patch, 0.5)
    assert plan.pads == ((12, 12), (0, 0), (0, 0))
    assert len(plan.starts) == 1 * len(window_starts(100, 64, 0.5)) * len(window_starts(70, 64, 0.5))
    cover = np.zeros(shape, int)
    for start in plan.starts:
        vol, sub = plan.boxes(start)
        # hand check of the padded axis: the window spans padded [0, 64) = volume [-12, 52)
        assert (vol[0], sub[0]) == (slice(0, 40), slice(12, 52))
        assert [s.stop - s.start for s in vol] == [s.stop - s.start for s in sub]
        cover[vol] += 1
    assert cover.min() >= 1


def test_plan_skips_only_windows_without_body():
    shape, patch = (64, 128, 64), (64, 64, 64)  # windows along y start at 0, 32, 64
    body = np.zeros(shape, bool)
    body[10, 20, 10] = True  # only in windows starting at y = 0
    plan = plan_windows(shape, patch, 0.5, body)
    assert plan.starts == ((0, 0, 0),) and plan.skipped == 2
    body[10, 70, 10] = True  # y = 70 lies in the windows at 32 and 64
    assert len(plan_windows(shape, patch, 0.5, body).starts) == 3
