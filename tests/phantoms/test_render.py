import numpy as np
import pytest

from l2s_engine.phantoms.render import BodyGrid, blur, gaussian_kernel, noise_gain, occupancy
from l2s_engine.phantoms.shapes import Ellipsoid


def test_gaussian_kernel_matches_the_formula():
    k = gaussian_kernel(1.3)
    x = np.arange(-4, 5)
    ref = np.exp(-0.5 * (x / 1.3) ** 2)
    np.testing.assert_allclose(k, ref / ref.sum(), rtol=1e-6)


def test_blur_equals_scipy_correlation_with_the_same_kernel():
    ndimage = pytest.importorskip("scipy.ndimage")
    rng = np.random.default_rng(0)
    vol = rng.uniform(size=(9, 11, 13)).astype(np.float32)
    sigmas = (0.7, 1.4, 2.0)
    ref = vol.astype(np.float64)
    for axis, s in enumerate(sigmas):
        ref = ndimage.correlate1d(ref, gaussian_kernel(s).astype(np.float64), axis=axis, mode="nearest")
    np.testing.assert_allclose(blur(vol, sigmas), ref, rtol=1e-5, atol=1e-6)


def test_noise_gain_is_the_std_of_blurred_white_noise():
    rng = np.random.default_rng(1)
    white = rng.standard_normal((80, 80, 80)).astype(np.float32)
    sigmas = (1.0, 1.36, 1.36)
    inner = blur(white, sigmas)[8:-8, 8:-8, 8:-8]
    assert inner.std() == pytest.approx(noise_gain(sigmas), rel=0.05)


def test_occupancy_volume_matches_the_ellipsoid():
    axis = np.arange(-40, 41, dtype=np.float32) * 1.0
    grid = BodyGrid(d=axis, v=axis, u=axis, ramp=1.0)
    shape = Ellipsoid((0.3, -2.0, 5.0), (12.0, 9.0, 15.0))
    box, occ = occupancy(grid, shape)
    assert occ.sum() == pytest.approx(4 / 3 * np.pi * 12 * 9 * 15, rel=0.02)
    assert occupancy(grid, Ellipsoid((500.0, 0.0, 0.0), (5.0, 5.0, 5.0))) is None


def _posed(roll_deg=0.0, lean_u=0.0, lean_v=0.0, pivot=(0.0, 0.0, 0.0)):
    from l2s_engine.phantoms.render import PosedGrid

    axis = np.arange(-40, 41, dtype=np.float32) * 1.0
    return PosedGrid(d=axis, v=axis, u=axis, ramp=1.0, roll=np.radians(roll_deg), lean_u=lean_u, lean_v=lean_v,
                     pivot=pivot)


def test_posed_occupancy_without_pose_is_the_plain_one():
    axis = np.arange(-40, 41, dtype=np.float32) * 1.0
    shape = Ellipsoid((0.3, -2.0, 5.0), (12.0, 9.0, 15.0))
    box, occ = occupancy(BodyGrid(d=axis, v=axis, u=axis, ramp=1.0), shape)
    posed_box, posed_occ = occupancy(_posed(), shape)
    full, posed_full = np.zeros((81,) * 3, np.float32), np.zeros((81,) * 3, np.float32)
    full[box], posed_full[posed_box] = occ, posed_occ
    np.testing.assert_allclose(posed_full, full, atol=1e-5)


def test_posed_occupancy_rolls_and_leans_about_the_pivot():
    """Roll 30 degrees about the d axis through the pivot, then shift u by 0.1 mm per mm of d: the
    volume stays (rotation and shear keep it), the centroid lands where the hand-rotated centre does."""
    pivot, centre = (2.0, -3.0, 1.0), np.array([12.0, -3.0, 9.0])
    grid = _posed(30.0, 0.1, 0.0, pivot)
    shape = Ellipsoid(tuple(centre), (6.0, 9.0, 7.0))
    box, occ = occupancy(grid, shape)
    assert occ.sum() == pytest.approx(4 / 3 * np.pi * 6 * 9 * 7, rel=0.02)
    d, v, u = np.meshgrid(grid.d[box[0]], grid.v[box[1]], grid.u[box[2]], indexing="ij")
    centroid = np.array([(u * occ).sum(), (v * occ).sum(), (d * occ).sum()]) / occ.sum()
    t = np.radians(30.0)
    du, dv = centre[0] - pivot[0], centre[1] - pivot[1]
    expected = (pivot[0] + np.cos(t) * du - np.sin(t) * dv + 0.1 * (centre[2] - pivot[2]),
                pivot[1] + np.sin(t) * du + np.cos(t) * dv, centre[2])
    np.testing.assert_allclose(centroid, expected, atol=0.1)
