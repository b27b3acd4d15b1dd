"""Fusion rules on hand-built cases."""

import numpy as np
import pytest

from l2s_engine.postprocess import fuse, fuse_components, fuse_paper
from l2s_engine.spec import FusionSpec

SPEC = FusionSpec()  # cue 0.5, low 0.1, high 0.5


def test_paper_rule_by_hand():
    p3d = np.array([0.05, 0.1, 0.2, 0.5, 0.6, 0.2, 0.5, 0.6], np.float32)
    cue = np.array([0.9, 0.9, 0.9, 0.9, 0.9, 0.5, 0.4, 0.0], np.float32)
    # cue > 0.5: threshold 0.1 (strict); cue <= 0.5: threshold 0.5 (strict)
    assert fuse_paper(p3d, cue, SPEC).tolist() == [0, 0, 1, 1, 1, 0, 0, 1]
    assert fuse_paper(p3d, cue, SPEC).dtype == np.uint8


def _block(arr, corner, size, value):
    box = tuple(slice(c, c + s) for c, s in zip(corner, size))
    arr[box] = value
    return box


def test_components_rule_by_hand():
    p = np.zeros((24, 24, 40), np.float32)
    cue = np.zeros_like(p)
    expected = np.zeros(p.shape, np.uint8)
    # C1: 200 low voxels with a 36-voxel certain core, touching the cue: 200/36 > 2.25 -> core only
    _block(p, (1, 1, 1), (5, 5, 8), 0.6)
    core = _block(p, (2, 2, 3), (3, 3, 4), 0.95)
    cue[3, 3, 4] = 1.0  # inside the kept core: this cue component adds nothing
    expected[core] = 1
    # C2: 60 voxels, 40 certain, touching the cue: 60/40 <= 2.25 -> all of it
    c2 = _block(p, (10, 10, 1), (3, 4, 5), 0.7)
    _block(p, (10, 10, 1), (2, 4, 5), 0.97)
    cue[11, 11, 2] = 1.0
    expected[c2] = 1
    # C3: 30 certain voxels but no cue -> its most probable voxel only
    _block(p, (1, 10, 20), (2, 3, 5), 0.92)
    p[2, 11, 22] = 0.99
    expected[2, 11, 22] = 1
    # C4: touches the cue but has only 8 certain voxels -> most probable voxel only
    _block(p, (15, 1, 20), (3, 3, 3), 0.55)
    _block(p, (15, 1, 20), (2, 2, 2), 0.91)
    p[16, 2, 21] = 0.96
    cue[16, 2, 21] = 1.0  # on the kept peak: adds nothing
    expected[16, 2, 21] = 1
    # cue component away from every kept voxel, peak p3d 0.3 > 0.1 -> its peak voxel
    _block(cue, (20, 20, 30), (2, 2, 2), 0.8)
    p[21, 20, 31] = 0.3
    expected[21, 20, 31] = 1
    # cue component whose peak p3d is 0.05 -> nothing
    _block(cue, (20, 10, 35), (2, 2, 2), 0.8)
    p[20, 10, 35] = 0.05
    got = fuse_components(p, cue, SPEC)
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(fuse("components", p, cue, SPEC), expected)


def test_components_rule_empty_when_everything_is_small():
    p = np.zeros((10, 10, 10), np.float32)
    _block(p, (1, 1, 1), (4, 5, 5), 0.6)       # 100 low voxels (< 150)
    _block(p, (1, 1, 1), (2, 5, 4), 0.95)      # 40 certain voxels (< 50)
    cue = np.ones_like(p)
    assert not fuse_components(p, cue, SPEC).any()
    _block(p, (1, 1, 1), (2, 5, 5), 0.95)      # 50 certain voxels: the rules apply
    assert fuse_components(p, cue, SPEC).sum() == 100  # 100 / 50 <= 2.25: the whole component


def test_unknown_rule():
    with pytest.raises(ValueError, match="components"):
        fuse("majority", np.zeros(2), np.zeros(2), SPEC)


def test_paper_rule_on_a_volume_of_several_slabs_equals_np_where():
    rng = np.random.default_rng(2)
    p3d, cue = rng.uniform(size=(37, 9, 11)).astype(np.float32), rng.uniform(size=(37, 9, 11)).astype(np.float32)
    ref = np.where(cue.astype(np.float64) > 0.5, p3d.astype(np.float64) > 0.1, p3d.astype(np.float64) > 0.5)
    np.testing.assert_array_equal(fuse_paper(p3d, cue, SPEC), ref.astype(np.uint8))
