import numpy as np
import pytest

from l2s_engine.geometry import Geometry
from l2s_engine.qc import CUE_RGB, LESION_RGB, coronal_view, enlarge, outline, overlay, qc_picture, to_gray, write_png

LPS_FLIPPED = (-1.0, 0, 0, 0, -1.0, 0, 0, 0, 1.0)


def test_coronal_view_puts_the_head_up_and_the_patients_left_on_the_viewers_right():
    # (z, y, x) = (4, 3, 2) voxels; z index grows to the head, x index to the patient's right
    g = Geometry((2, 3, 4), (2.0, 2.0, 2.0), (0.0, 0.0, 0.0), LPS_FLIPPED)
    vol = np.zeros(g.shape, np.float32)
    vol[3, 1, 0] = 5.0  # most superior slice, x index 0 = the patient's left (world x largest)
    vol[0, 2, 1] = 2.0  # most inferior slice, patient's right
    view = coronal_view(vol, g)
    assert view.shape == (4, 2)
    assert view[0, 1] == 5.0 and view[3, 0] == 2.0
    mid = coronal_view(vol, g, reduce="mid")
    assert mid[0, 1] == 5.0 and mid[3, 0] == 0.0  # slice y=1 holds only the first marker


def test_coronal_view_makes_square_pixels():
    g = Geometry((4, 2, 3), (2.0, 2.0, 6.0), (0.0, 0.0, 0.0))
    assert coronal_view(np.zeros(g.shape), g).shape == (9, 4)


def test_png_round_trip_through_pillow(tmp_path):
    image = pytest.importorskip("PIL.Image")
    gray = to_gray(np.linspace(0, 10, 35).reshape(5, 7), 0, 10, invert=True)
    assert gray[0, 0] == 255 and gray[-1, -1] == 0
    rgb = overlay(gray, gray < 128)
    for name, data in (("g.png", gray), ("c.png", rgb)):
        path = write_png(tmp_path / name, data)
        np.testing.assert_array_equal(np.asarray(image.open(path)), data)


def test_enlarge_repeats_whole_pixels_to_the_minimum_width():
    image = np.array([[1, 2, 3], [4, 5, 6]], np.uint8)
    big = enlarge(image, min_width=7)  # k = 3: 9 >= 7 > 6
    assert big.shape == (6, 9)
    for r in range(6):
        for c in range(9):
            assert big[r, c] == image[r // 3, c // 3]
    rgb = np.zeros((2, 500, 3), np.uint8)
    assert enlarge(rgb, min_width=400) is rgb  # wide enough: unchanged
    assert enlarge(np.zeros((1, 100, 3), np.uint8), min_width=400).shape == (4, 400, 3)


def test_outline_keeps_the_pixels_with_a_neighbour_outside():
    mask = np.zeros((7, 8), bool)
    mask[1:5, 1:6] = True   # a 4 x 5 block: its interior is rows 2-3, cols 2-4
    mask[6, 7] = True       # one pixel in the corner: the picture's edge counts as outside
    expected = mask.copy()
    expected[2:4, 2:5] = False
    np.testing.assert_array_equal(outline(mask), expected)
    assert not outline(np.zeros((3, 3), bool)).any()


def test_qc_picture_blends_the_mask_in_red_and_outlines_the_cue_in_blue():
    pet = np.zeros((10, 100), np.float32)   # k = 4: 40 x 400 pixels
    mask = np.zeros((10, 100), bool)
    mask[3, 12] = True
    cue = np.zeros((10, 100), bool)
    cue[2:6, 10:20] = True                  # enlarged: rows 8-23, cols 40-79
    picture = qc_picture(pet, mask, cue)
    assert picture.shape == (40, 400, 3)
    blue = np.all(picture == CUE_RGB, axis=2)
    ring = np.zeros((40, 400), bool)
    ring[8:24, 40:80] = True
    ring[9:23, 41:79] = False
    np.testing.assert_array_equal(blue, ring)
    red = 0.3 * 255 + 0.7 * np.asarray(LESION_RGB)    # 70 % lesion colour over white (SUV 0)
    assert np.abs(picture[12:16, 48:52] - red).max() <= 0.5  # the lesion inside the outline
    assert np.all(picture[30, 200] == 255)            # elsewhere the white background
    np.testing.assert_array_equal(qc_picture(pet, mask), enlarge(overlay(to_gray(pet, 0, 10, invert=True), mask)))
