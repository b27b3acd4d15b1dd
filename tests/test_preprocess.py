import numpy as np
import pytest

from l2s_engine.geometry import Geometry
from l2s_engine.preprocess import (
    from_coronal,
    intensity_window,
    resize_bilinear,
    slice_context,
    slices_from_output,
    slices_to_input,
    to_coronal,
)

LPS_FLIPPED = (-1.0, 0, 0, 0, -1.0, 0, 0, 0, 1.0)


def test_window_matches_the_formula():
    x = np.array([-5.0, 0.0, 7.5, 15.0, 30.0])
    ref = (np.clip(x, 0, 15) - 0) / 15 * 2 - 1
    np.testing.assert_allclose(intensity_window(x, 0.0, 15.0), ref, atol=1e-6)
    assert intensity_window(x, 0.0, 15.0).dtype == np.float32


@pytest.mark.parametrize("src, dst", [((7, 9), (16, 20)), ((5, 5), (5, 12)), ((12, 10), (12, 10))])
def test_resize_bilinear_equals_torch_when_enlarging(src, dst):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(0).uniform(size=(3, *src)).astype(np.float32)
    ref = torch.nn.functional.interpolate(torch.from_numpy(x)[:, None].double(), size=dst, mode="bilinear",
                                          align_corners=False)[:, 0].numpy()
    np.testing.assert_allclose(resize_bilinear(x, dst), ref, atol=1e-5)


def test_resize_bilinear_shrinks_by_exact_factor_like_averaging_pairs():
    x = np.arange(8, dtype=np.float32).reshape(1, 1, 8)
    # halving with half-pixel centres samples at 0.5, 2.5, ... : the mean of each pair
    np.testing.assert_allclose(resize_bilinear(x, (1, 4))[0, 0], [0.5, 2.5, 4.5, 6.5])


def test_coronal_stack_follows_the_direction_matrix():
    axial = Geometry((4, 3, 2), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), LPS_FLIPPED)
    vol = np.arange(24).reshape(axial.shape)
    stack = to_coronal(vol, axial)
    assert stack.shape == (3, 2, 4)                 # (y, z, x)
    assert stack[1, 0, 3] == vol[0, 1, 3]
    np.testing.assert_array_equal(from_coronal(stack, axial), vol)
    # array axes (z, y, x) running along world (y, z, x): anterior-posterior is numpy axis 0
    odd = Geometry((4, 3, 2), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), (1.0, 0, 0, 0, 0, 1.0, 0, 1.0, 0))
    assert to_coronal(vol, odd).shape == (2, 3, 4)


def test_slice_context_clamps_at_the_ends():
    np.testing.assert_array_equal(slice_context(5, np.array([0, 4]), 5), [[0, 0, 0, 1, 2], [2, 3, 4, 4, 4]])


def test_slices_round_trip_without_resize_is_identity_inside_the_crop():
    rng = np.random.default_rng(1)
    coronal = rng.uniform(size=(6, 10, 12)).astype(np.float32)
    x = slices_to_input(coronal, np.array([2, 3]), resize=(10, 12), crop=(1, 9, 2, 10), in_slices=3)
    assert x.shape == (2, 3, 8, 8)
    np.testing.assert_array_equal(x[0, 0], coronal[1, 1:9, 2:10])
    np.testing.assert_array_equal(x[1, 2], coronal[4, 1:9, 2:10])
    back = slices_from_output(x[:, 1], resize=(10, 12), crop=(1, 9, 2, 10), rows_cols=(10, 12))
    np.testing.assert_array_equal(back[:, 1:9, 2:10], coronal[2:4, 1:9, 2:10])
    assert back[:, 0].max() == 0 and back[:, :, :2].max() == 0
