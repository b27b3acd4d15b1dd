import numpy as np
import pytest

from l2s_engine.tiling import gaussian_weights, pad_amounts, window_grid, window_starts


@pytest.mark.parametrize("length, patch, frac, expected", [
    (64, 64, 0.5, [0]),
    (100, 64, 0.5, [0, 18, 36]),
    (96, 64, 0.5, [0, 32]),
    (97, 64, 0.5, [0, 16, 33]),
    (200, 64, 1.0, [0, 45, 91, 136]),
])
def test_window_starts_by_hand(length, patch, frac, expected):
    assert window_starts(length, patch, frac) == expected


@pytest.mark.parametrize("length, patch, frac", [(65, 64, 0.5), (300, 48, 0.5), (129, 32, 0.25), (70, 7, 1.0)])
def test_windows_cover_every_voxel_with_bounded_steps(length, patch, frac):
    starts = window_starts(length, patch, frac)
    covered = np.zeros(length, bool)
    for s in starts:
        covered[s:s + patch] = True
    assert covered.all() and starts[0] == 0 and starts[-1] == length - patch
    assert max(np.diff(starts), default=0) <= patch * frac


def test_window_errors_and_grid():
    with pytest.raises(ValueError, match="pad"):
        window_starts(10, 16, 0.5)
    with pytest.raises(ValueError):
        window_starts(32, 16, 0.0)
    assert len(window_grid((100, 64, 96), (64, 64, 64), 0.5)) == 3 * 1 * 2


def test_pad_amounts():
    assert pad_amounts((10, 64, 70), (16, 64, 64)) == ((3, 3), (0, 0), (0, 0))
    assert pad_amounts((5,), (8,)) == ((1, 2),)


def test_gaussian_weights_against_the_formula():
    w = gaussian_weights((8, 16, 12))
    z, y, x = np.meshgrid(*[np.arange(n) - (n - 1) / 2 for n in (8, 16, 12)], indexing="ij")
    ref = np.exp(-0.5 * ((z / 1.0) ** 2 + (y / 2.0) ** 2 + (x / 1.5) ** 2))
    ref = np.maximum(ref / ref.max(), 1e-6)  # the documented floor: no weight below 1e-6
    np.testing.assert_allclose(w, ref, rtol=1e-5)
    assert w.min() > 0 and w.dtype == np.float32
    np.testing.assert_array_equal(w, w[::-1, ::-1, ::-1])
