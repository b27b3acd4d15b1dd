import numpy as np

from l2s_engine.geometry import Geometry


def test_index_to_world_hand_computed():
    g = Geometry((4, 5, 6), (2.0, 3.0, 4.0), (10.0, 20.0, 30.0), (-1.0, 0, 0, 0, -1.0, 0, 0, 0, 1.0))
    np.testing.assert_allclose(g.index_to_world([1, 2, 3]), [10 - 2, 20 - 6, 30 + 12])
    assert g.shape == (6, 5, 4)
    assert g.voxel_volume_ml == 24.0 / 1000


def test_anatomical_axes_are_read_from_the_direction():
    axial = Geometry((4, 5, 6), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), (-1.0, 0, 0, 0, -1.0, 0, 0, 0, 1.0))
    assert axial.anterior_posterior_axis() == 1 and axial.superior_inferior_axis() == 0
    # a coronal acquisition: index axes (x, y, z) run along world (x, z, y)
    coronal = Geometry((4, 5, 6), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), (1.0, 0, 0, 0, 0, 1.0, 0, -1.0, 0))
    assert coronal.anterior_posterior_axis() == 0 and coronal.superior_inferior_axis() == 1


def test_same_grid_and_differences():
    a = Geometry((4, 5, 6), (2.0, 2.0, 3.0), (0.0, 0.0, 0.0))
    assert a.same_grid(Geometry((4, 5, 6), (2.0, 2.0, 3.0), (0.0, 0.0, 0.0005)))
    b = Geometry((4, 5, 6), (2.0, 2.0, 3.0), (0.0, 1.0, 0.0))
    assert not a.same_grid(b) and a.differences(b) == ["origin (0.0, 1.0, 0.0) vs (0.0, 0.0, 0.0)"]
