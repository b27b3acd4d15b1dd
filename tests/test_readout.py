"""PET readout: every expected number is analytic, hand-counted or a float64 brute force here."""

import json
import math
import warnings

import cc3d
import numpy as np
import pytest

from l2s_engine.geometry import Geometry
from l2s_engine.readout import LESION_CSV_FIELDS, PEAK_RADIUS_MM, lesion_rows, pet_readout

FLIP_XY = (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)
RADIUS_MM = 10.0 * (3.0 / (4.0 * math.pi)) ** (1.0 / 3.0)  # 1 cm^3 sphere (PERCIST)


def grid(shape_zyx, spacing_xyz, origin=(0.0, 0.0, 0.0), direction=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)):
    return Geometry(size=tuple(shape_zyx[::-1]), spacing=spacing_xyz, origin=origin, direction=direction)


def brute_peak(suv, lesion, spacing_xyz):
    """For every lesion voxel as centre: mean SUV of all image voxels within the radius (mm)."""
    sz, sy, sx = spacing_xyz[::-1]
    z, y, x = np.indices(suv.shape)
    best = -math.inf
    for cz, cy, cx in np.argwhere(lesion):
        d2 = ((z - cz) * sz) ** 2 + ((y - cy) * sy) ** 2 + ((x - cx) * sx) ** 2
        best = max(best, float(suv[d2 <= RADIUS_MM**2].astype(np.float64).mean()))
    return best


def test_peak_radius_is_the_percist_1ml_sphere():
    assert PEAK_RADIUS_MM == pytest.approx(6.2035, abs=1e-4)
    assert 4.0 / 3.0 * math.pi * PEAK_RADIUS_MM**3 == pytest.approx(1000.0)


def test_cubes_on_a_flipped_anisotropic_grid():
    g = grid((8, 10, 12), (2.0, 3.0, 5.0), origin=(10.0, -20.0, 30.0), direction=FLIP_XY)
    vv = 2.0 * 3.0 * 5.0 / 1000.0
    mask = np.zeros(g.shape, np.uint8)
    suv = np.ones(g.shape, np.float32)
    mask[5:7, 7:9, 9:11] = 1            # B: 8 voxels, SUV 2.5
    suv[5:7, 7:9, 9:11] = 2.5
    mask[1:4, 2:6, 3:8] = 1             # A: 3 x 4 x 5 = 60 voxels, SUV 4 with one voxel of 6
    suv[1:4, 2:6, 3:8] = 4.0
    suv[2, 3, 4] = 6.0
    r = pet_readout(mask, suv, g)
    a, b = r.lesions
    assert (r.lesion_count, a.lesion_id, a.voxels, b.lesion_id, b.voxels) == (2, 1, 60, 2, 8)
    assert a.volume_ml == pytest.approx(60 * vv, rel=1e-12) and b.volume_ml == pytest.approx(8 * vv, rel=1e-12)
    assert (a.suvmax, b.suvmax) == (6.0, 2.5)
    assert a.suvmean == pytest.approx((59 * 4.0 + 6.0) / 60, rel=1e-12) and b.suvmean == 2.5
    assert a.tlg_ml == pytest.approx(242.0 / 60 * 60 * vv, rel=1e-12)
    assert b.tlg_ml == pytest.approx(2.5 * 8 * vv, rel=1e-12)
    assert r.tmtv_ml == pytest.approx(68 * vv, rel=1e-12)
    assert r.tlg_ml == pytest.approx((242.0 + 20.0) * vv, rel=1e-12)
    assert (r.suvmax, r.suvmean) == (6.0, pytest.approx(262.0 / 68, rel=1e-12))
    # A's index centre (x, y, z) = (5, 3.5, 2): x and y run against world x and y.
    assert a.centroid_lps_mm == pytest.approx((10.0 - 5 * 2.0, -20.0 - 3.5 * 3.0, 30.0 + 2 * 5.0), abs=1e-12)
    # B's index centre (x, y, z) = (9.5, 7.5, 5.5).
    assert b.centroid_lps_mm == pytest.approx((10.0 - 9.5 * 2.0, -20.0 - 7.5 * 3.0, 30.0 + 5.5 * 5.0), abs=1e-12)


def test_equal_volumes_are_ordered_by_first_voxel_in_c_order():
    g = grid((6, 6, 6), (2.0, 2.0, 2.0))
    mask = np.zeros(g.shape, np.uint8)
    mask[4, 0, 0] = mask[0, 5, 5] = 1   # first in C order: (0, 5, 5)
    mask[2, 2, 2:4] = 1                 # larger: comes first whatever its position
    r = pet_readout(mask, np.ones(g.shape), g)
    assert [les.voxels for les in r.lesions] == [2, 1, 1]
    assert r.lesions[1].centroid_lps_mm == pytest.approx((10.0, 10.0, 0.0))
    assert r.lesions[2].centroid_lps_mm == pytest.approx((0.0, 0.0, 8.0))


def test_suvpeak_matches_brute_force_on_an_anisotropic_grid_with_a_border_lesion():
    spacing = (1.0, 2.0, 4.0)  # (x, y, z): swapping axes would change the sphere
    g = grid((14, 16, 22), spacing, origin=(5.0, 6.0, 7.0))
    rng = np.random.default_rng(3)
    z, y, x = np.indices(g.shape)
    d_mm = np.sqrt(((z - 7) * 4.0) ** 2 + ((y - 8) * 2.0) ** 2 + ((x - 13) * 1.0) ** 2)
    suv = (1.0 + 9.0 * np.exp(-(d_mm / 6.0) ** 2) + rng.uniform(0, 1.5, g.shape)).astype(np.float32)
    sphere = d_mm <= 9.0
    border = np.zeros(g.shape, bool)
    border[0:2, 0:3, 0:4] = True        # touches three faces of the image
    suv[border] += rng.uniform(2, 8, int(border.sum())).astype(np.float32)
    r = pet_readout(sphere | border, suv, g)
    assert r.lesion_count == 2
    big, small = r.lesions
    assert big.voxels == int(sphere.sum()) and small.voxels == 24
    assert big.suvpeak == pytest.approx(brute_peak(suv, sphere, spacing), rel=1e-12)
    assert small.suvpeak == pytest.approx(brute_peak(suv, border, spacing), rel=1e-12)
    assert r.suvpeak == max(big.suvpeak, small.suvpeak)


def test_uniform_sphere_larger_than_the_peak_sphere_peaks_at_its_suv():
    g = grid((20, 24, 24), (2.0, 2.0, 3.0))
    z, y, x = np.indices(g.shape)
    ball = ((z - 10) * 3.0) ** 2 + ((y - 12) * 2.0) ** 2 + ((x - 12) * 2.0) ** 2 <= 15.0**2
    suv = np.where(ball, 10.0, 1.0).astype(np.float32)
    r = pet_readout(ball, suv, g)
    assert r.suvpeak == 10.0 and r.lesions[0].suvpeak == 10.0


@pytest.mark.parametrize("spacing, expected", [
    # 4 mm isotropic: centre + 6 faces (4 mm) + 12 edges (5.66 mm); corners (6.93 mm) are out.
    # One hot voxel of 20 in 1: (20 + 18) / 19.
    ((4.0, 4.0, 4.0), (20.0 + 18 * 1.0) / 19),
    # 3 x 3 x 5 mm: in-plane (dy^2 + dx^2) <= 4.27 -> 1 + 4 + 4 + 4 = 13; planes z +-1:
    # 25 + 9 (dy^2 + dx^2) <= 38.5 -> 5 each. 23 voxels, both lesion voxels (SUV 20 and 12) inside.
    ((3.0, 3.0, 5.0), (20.0 + 12.0 + 21 * 1.0) / 23),
])
def test_lesion_smaller_than_the_peak_sphere_averages_in_its_surroundings(spacing, expected):
    g = grid((9, 9, 9), spacing)
    mask = np.zeros(g.shape, bool)
    suv = np.ones(g.shape, np.float32)
    if spacing[2] == 5.0:
        mask[4, 4, 4:6] = True
        suv[4, 4, 4], suv[4, 4, 5] = 20.0, 12.0
    else:
        mask[4, 4, 4] = True
        suv[4, 4, 4] = 20.0
    assert pet_readout(mask, suv, g).suvpeak == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("second, lesions18, lesions26", [
    ((2, 2, 3), 1, 1),   # shares a face
    ((2, 3, 3), 1, 1),   # shares an edge only: 18-connected
    ((3, 3, 3), 2, 1),   # shares a corner only: apart under 18, joined under 26
])
def test_lesions_are_18_connected_components(second, lesions18, lesions26):
    g = grid((6, 6, 6), (2.0, 2.0, 2.0))
    mask = np.zeros(g.shape, np.uint8)
    mask[2, 2, 2] = 1
    mask[second] = 1
    assert cc3d.connected_components(mask, connectivity=26, return_N=True)[1] == lesions26  # the case is as built
    r = pet_readout(mask, np.ones(g.shape), g)
    assert r.lesion_count == len(r.lesions) == lesions18
    assert r.tmtv_ml == pytest.approx(2 * 8.0 / 1000)


def test_empty_mask_reads_zero_and_none_without_warnings():
    g = grid((5, 6, 7), (2.0, 2.0, 3.0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = pet_readout(np.zeros(g.shape, np.uint8), np.ones(g.shape), g, cue=np.ones(g.shape))
    assert r.summary() == {"tmtv_ml": 0.0, "tlg_ml": 0.0, "suvmax": None, "suvmean": None, "suvpeak": None,
                           "lesion_count": 0}
    assert r.lesions == () and lesion_rows("c", r) == []
    json.dumps(r.summary(), allow_nan=False)


def test_cue_flags_and_lesion_rows():
    g = grid((6, 8, 10), (2.0, 2.0, 3.0), origin=(1.0, 2.0, 3.0))
    mask = np.zeros(g.shape, np.uint8)
    mask[1:3, 1:3, 1:4] = 1             # 12 voxels, cued in one voxel
    mask[4, 6, 7:9] = 1                 # 2 voxels, cue exactly at the threshold: not cued
    cue = np.zeros(g.shape, np.float32)
    cue[2, 2, 3] = 0.9
    cue[4, 6, 7] = 0.5
    cue[0, 0, 0] = 1.0                  # outside every lesion
    suv = np.full(g.shape, 3.0)
    r = pet_readout(mask, suv, g, cue=cue)
    assert [les.cue for les in r.lesions] == [True, False]
    assert [les.cue for les in pet_readout(mask, suv, g, cue=cue, cue_threshold=0.4).lesions] == [True, True]
    assert [les.cue for les in pet_readout(mask, suv, g).lesions] == [None, None]
    rows = lesion_rows("PETCT_1", r)
    assert LESION_CSV_FIELDS == ("study", "lesion_id", "x_mm", "y_mm", "z_mm", "volume_ml", "suvmax", "suvmean",
                                 "suvpeak", "tlg_ml", "voxels", "cue")
    assert [tuple(row) for row in rows] == [LESION_CSV_FIELDS] * 2
    first = rows[0]
    assert (first["study"], first["lesion_id"], first["voxels"], first["cue"]) == ("PETCT_1", 1, 12, "yes")
    # index centre (x, y, z) = (2, 1.5, 1.5) on spacing (2, 2, 3) from origin (1, 2, 3)
    assert (first["x_mm"], first["y_mm"], first["z_mm"]) == pytest.approx((5.0, 5.0, 7.5))
    assert first["volume_ml"] == pytest.approx(12 * 0.012) and first["tlg_ml"] == pytest.approx(3.0 * 12 * 0.012)
    assert (first["suvmax"], first["suvmean"], first["suvpeak"]) == (3.0, 3.0, 3.0)
    assert rows[1]["cue"] == "no" and rows[1]["lesion_id"] == 2
    assert [row["cue"] for row in lesion_rows("x", pet_readout(mask, suv, g))] == ["", ""]


def test_inputs_are_validated():
    g = grid((4, 5, 6), (2.0, 2.0, 3.0))
    mask = np.zeros(g.shape, np.uint8)
    mask[1, 1, 1] = 1
    suv = np.ones(g.shape, np.float32)
    with pytest.raises(ValueError, match=r"mask shape \(4, 5, 6\) differs from SUV shape \(4, 5, 7\)"):
        pet_readout(mask, np.ones((4, 5, 7)), g)
    with pytest.raises(ValueError, match=r"geometry's \(z, y, x\) shape \(4, 5, 6\)"):
        pet_readout(np.zeros((6, 5, 4)), np.ones((6, 5, 4)), g)
    with pytest.raises(ValueError, match="cue shape"):
        pet_readout(mask, suv, g, cue=np.zeros((4, 5)))
    bad = suv.copy()
    bad[1, 1, 1] = np.nan
    with pytest.raises(ValueError, match=r"1 non-finite voxels inside the mask, first at \(z, y, x\) \(1, 1, 1\)"):
        pet_readout(mask, bad, g)
    near = suv.copy()
    near[1, 1, 2] = np.nan              # 2 mm from the lesion: inside its peak sphere
    with pytest.raises(ValueError, match="not finite within"):
        pet_readout(mask, near, g)
    far = suv.copy()
    far[3, 4, 5] = np.nan               # far from the lesion: does not matter
    assert pet_readout(mask, far, g).suvpeak == 1.0
