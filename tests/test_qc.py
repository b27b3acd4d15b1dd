import numpy as np
import pytest

from l2s_engine.geometry import Geometry
from l2s_engine.qc import coronal_view, enlarge, overlay, to_gray, write_png

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
