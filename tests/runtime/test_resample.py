"""Resampling between the native and the network grid (l2s_engine.resample), each function
alone: shape math by hand, linear against SimpleITK's Resample, Keys cubic against a float64
brute-force sum, and the index bookkeeping of the on-demand cue."""

import numpy as np
import pytest

from l2s_engine.geometry import Geometry
from l2s_engine.resample import (
    SPACING_RTOL,
    GridError,
    cubic_table,
    equal_axes,
    grid_map,
    linear_table,
    network_shape,
    resample,
    spacing_zyx,
)

# LPS-like, x and y flipped, a non-zero origin: as the phantoms' and real exports' headers
FLIPPED = (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)


def geometry(shape_zyx, spacing_zyx, origin=(12.5, -40.0, 101.0), direction=FLIPPED) -> Geometry:
    return Geometry(size=tuple(reversed(shape_zyx)), spacing=tuple(reversed(spacing_zyx)), origin=origin,
                    direction=direction)


def test_network_shape_by_hand():
    # a `full` study (autoPET grid) onto the demo weights' grid: 326 * 3 / 6.1 = 160.3,
    # 400 * 2.0364 / 4.2 = 193.9
    assert network_shape((326, 400, 400), (3.0, 2.0364, 2.0364), (6.1, 4.2, 4.2)) == (160, 194, 194)
    # and back up: 160 * 6.1 / 3.0 = 325.3
    assert network_shape((160, 112, 136), (6.1, 4.2, 4.2), (3.0, 2.0364, 2.0364)) == (325, 231, 280)
    assert network_shape((3, 1, 2), (1.0, 1.0, 1.0), (10.0, 10.0, 10.0)) == (1, 1, 1)  # never 0 voxels


def test_equal_within_the_relative_tolerance_only():
    net = (3.0, 2.0364, 2.0364)
    assert SPACING_RTOL == 1e-3
    assert equal_axes((3.0, 2.0364201068878174, 2.0364), net) == (True, True, True)  # autoPET's header value
    assert equal_axes((3.0 * (1 + 0.9e-3), 2.0364 * (1 - 0.9e-3), 2.0364), net) == (True, True, True)
    assert equal_axes((3.0 * (1 + 1.1e-3), 2.0364, 2.0364 * (1 - 1.1e-3)), net) == (False, True, False)
    # a size that rounds to the same count is still resampled when the spacing differs
    assert network_shape((100, 10, 10), (3.0 * 1.002, 2.0364, 2.0364), net) == (100, 10, 10)
    assert grid_map(geometry((100, 10, 10), (3.0 * 1.002, 2.0364, 2.0364)), net).axes == (True, False, False)


def test_grid_map_keeps_origin_and_direction_and_says_what_it_did():
    g = geometry((40, 30, 20), (3.0, 2.0, 2.0))
    m = grid_map(g, (6.0, 2.0005, 4.0))
    assert m.axes == (True, False, True) and m.resampled
    assert m.network.origin == g.origin and m.network.direction == g.direction
    assert spacing_zyx(m.network) == (6.0, 2.0, 4.0)  # the untouched axis keeps its own spacing
    assert m.network.shape == (20, 30, 10)
    info = m.describe(0.25)
    assert info["native_spacing_zyx_mm"] == [3.0, 2.0, 2.0] and info["network_spacing_zyx_mm"] == [6.0, 2.0005, 4.0]
    assert info["network_shape"] == [20, 30, 10] and info["resampled"] and info["resample_seconds"] == 0.25
    same = grid_map(g, (3.0, 2.0, 2.0))
    assert not same.resampled and same.network == g
    volume = np.ones((40, 30, 20), np.int16)
    assert same.to_network(volume, "cubic") is volume and same.to_native(volume) is volume
    with pytest.raises(GridError, match="finite and positive"):
        grid_map(geometry((4, 4, 4), (0.0, 1.0, 1.0)), (1.0, 1.0, 1.0))


def sitk_resample_linear(volume: np.ndarray, src: Geometry, dst: Geometry) -> np.ndarray:
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(volume.astype(np.float64))
    image.SetSpacing(src.spacing)
    image.SetOrigin(src.origin)
    image.SetDirection(src.direction)
    out = sitk.Resample(image, dst.size, sitk.Transform(), sitk.sitkLinear, dst.origin, dst.spacing,
                        dst.direction, np.nan, sitk.sitkFloat64)
    return sitk.GetArrayFromImage(out)


@pytest.mark.parametrize("spacing_net", [(6.1, 4.2, 4.2), (2.5, 1.3, 3.1)])
def test_linear_resampling_equals_simpleitk(spacing_net):
    pytest.importorskip("SimpleITK")
    rng = np.random.default_rng(0)
    native = geometry((23, 31, 37), (3.0, 2.0364, 2.0364))
    volume = rng.normal(size=native.shape).astype(np.float32)
    m = grid_map(native, spacing_net)
    got = resample(volume, m.tables("to_network", "linear"))
    ref = sitk_resample_linear(volume, native, m.network)
    inside = np.isfinite(ref)  # SimpleITK leaves points past the last half voxel at the default
    assert inside.mean() > 0.8
    np.testing.assert_allclose(got[inside], ref[inside], rtol=0, atol=2e-6)
    # and back onto the native grid, the way probabilities return
    back = m.to_native(got)
    ref_back = sitk_resample_linear(got, m.network, native)
    inside = np.isfinite(ref_back)
    np.testing.assert_allclose(back[inside], ref_back[inside], rtol=0, atol=2e-6)


def keys_reference(volume: np.ndarray, steps, shape_out) -> np.ndarray:
    """Keys (a = -0.5) cubic convolution in float64, voxel by voxel, 64 taps each."""

    def kernel(t):
        t = abs(t)
        if t <= 1:
            return 1.5 * t ** 3 - 2.5 * t ** 2 + 1
        if t < 2:
            return -0.5 * t ** 3 + 2.5 * t ** 2 - 4 * t + 2
        return 0.0

    v = volume.astype(np.float64)
    out = np.zeros(shape_out)
    n = v.shape
    for idx in np.ndindex(*shape_out):
        pos = [min(i * s, m - 1) for i, s, m in zip(idx, steps, n)]
        base = [int(np.floor(p)) for p in pos]
        total = 0.0
        for dz in range(-1, 3):
            for dy in range(-1, 3):
                for dx in range(-1, 3):
                    w = kernel(pos[0] - base[0] - dz) * kernel(pos[1] - base[1] - dy) * kernel(pos[2] - base[2] - dx)
                    z, y, x = (min(max(b + d, 0), m - 1) for b, d, m in zip(base, (dz, dy, dx), n))
                    total += w * v[z, y, x]
        out[idx] = total
    return out


def test_cubic_resampling_equals_a_float64_brute_force_sum():
    rng = np.random.default_rng(1)
    native = geometry((9, 11, 13), (3.0, 2.0, 2.0))
    volume = rng.uniform(0, 20, native.shape).astype(np.float32)
    m = grid_map(native, (2.1, 3.3, 1.7))
    got = m.to_network(volume, "cubic")
    steps = [t / s for t, s in zip((2.1, 3.3, 1.7), (3.0, 2.0, 2.0))]
    ref = keys_reference(volume, steps, m.network.shape)
    np.testing.assert_allclose(got, ref, rtol=0, atol=2e-5 * 20)


def test_cubic_interpolates_and_keeps_linear_ramps():
    n = 12
    i0 = linear_table(n, 5, 2.0)
    taps, weights = cubic_table(n, 23, 0.5)
    assert i0[0].tolist() == [0, 2, 4, 6, 8] and not i0[2].any()   # whole steps: the samples themselves
    ramp = np.arange(n, dtype=np.float32)
    got = (ramp[taps] * weights).sum(axis=1)
    # on the grid points it returns the samples; between them, a linear ramp is kept exactly
    # (Keys reproduces polynomials up to degree 2) away from the clamped edges
    np.testing.assert_allclose(got[::2], ramp[:12], atol=1e-6)
    np.testing.assert_allclose(got[2:-3], np.arange(23)[2:-3] * 0.5, atol=1e-5)


def test_slabs_do_not_change_the_result():
    rng = np.random.default_rng(2)
    volume = rng.normal(size=(29, 17, 15)).astype(np.float32)
    m = grid_map(geometry(volume.shape, (3.0, 2.0, 2.0)), (1.3, 2.9, 4.1))
    for order in ("linear", "cubic"):
        tables = m.tables("to_network", order)
        np.testing.assert_array_equal(resample(volume, tables, slab=1), resample(volume, tables, slab=64))


def test_network_sources_are_the_interpolation_stencil():
    m = grid_map(geometry((10, 8, 20), (3.0, 2.0, 2.0)), (3.0, 5.0, 2.0))  # y: 8 -> 3 voxels
    i0, i1, w = m.tables("to_native", "linear")[1]
    # native y index j sits at network position j * 2 / 5: 0, 0.4, 0.8, 1.2, 1.6, 2.0, 2.4->2, 2.8->2
    np.testing.assert_allclose(w, [0, 0.4, 0.8, 0.2, 0.6, 0, 0, 0], atol=1e-6)
    assert m.network_sources(1, [0]).tolist() == [0]
    assert m.network_sources(1, [1]).tolist() == [0, 1]
    assert m.network_sources(1, [3, 6]).tolist() == [1, 2]
    assert m.network_sources(0, [4, 2]).tolist() == [2, 4]  # an axis not resampled: the same slices
