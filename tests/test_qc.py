import numpy as np
import pytest

from l2s_engine.geometry import Geometry
from l2s_engine.qc import coronal_view, overlay, to_gray, write_png

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
