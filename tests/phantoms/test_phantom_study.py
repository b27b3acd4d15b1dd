import numpy as np
import pytest

from l2s_engine.phantoms import SIZES, has_lesions, make_phantom
from l2s_engine.phantoms.anatomy import LESION_SITES


def test_same_seed_same_study_other_seed_other_study():
    a, b = make_phantom(3, seed=7, size="tiny"), make_phantom(3, seed=7, size="tiny")
    for name in ("pet", "ct", "seg"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.geometry == b.geometry and a.case_id == b.case_id and a.study_name == b.study_name
    c = make_phantom(3, seed=8, size="tiny")
    assert c.case_id != a.case_id and not np.array_equal(c.pet, a.pet)


def test_header_habits_and_dtypes():
    p = make_phantom(0, size="tiny")
    g = p.geometry
    assert g.direction == (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)
    assert all(abs(o) > 1.0 for o in g.origin)
    assert p.ct.dtype == np.int16 and p.pet.dtype == np.float32 and p.seg.dtype == np.uint8
    assert p.pet.shape == p.ct.shape == p.seg.shape == SIZES["tiny"].shape == g.shape
    assert p.pet.min() >= 0 and p.ct.min() >= -1024 and set(np.unique(p.seg)) <= {0, 1}


def test_full_size_is_the_autopet_grid():
    assert SIZES["full"].shape == (326, 400, 400)
    assert SIZES["full"].spacing == (3.0, 2.0364, 2.0364)


def test_about_half_the_studies_have_lesions():
    flags = [has_lesions(i, seed=0) for i in range(10)]
    assert sum(flags) == 5
    for i in range(6):
        p = make_phantom(i, size="tiny")
        assert bool(p.lesions) == has_lesions(i, 0) == bool(p.seg.any())


def test_lesion_sites_sizes_and_uptake_ranges():
    sites, lesions = set(), []
    for i in range(0, 60, 2):
        p = make_phantom(i, seed=0, size="tiny")
        lesions += p.lesions
        sites |= {lesion.site for lesion in p.lesions}
    assert sites == set(LESION_SITES)
    assert all(3.0 * 0.8 <= les.diameter_mm <= 30.0 * 1.25 for les in lesions)
    assert all(3.0 <= les.suv <= 20.0 for les in lesions)
    assert all(les.voxels >= 1 for les in lesions)


def test_lesions_are_hot_where_the_label_says_and_sized_as_drawn():
    checked = 0
    for i in range(0, 24, 2):
        p = make_phantom(i, seed=0, size="small")
        vv = float(np.prod(SIZES["small"].spacing))
        for lesion in p.lesions:
            if lesion.diameter_mm < 12:
                continue  # small lesions lose their peak to blur and partial volume, as in real PET
            volume_voxels = np.pi / 6 * lesion.diameter_mm**3 / vv
            assert 0.4 * volume_voxels <= lesion.voxels <= 2.5 * volume_voxels
            checked += 1
        if p.lesions:
            # the labelled voxels are hotter than the body around them, on average
            body = p.ct > -500
            assert p.pet[p.seg > 0].mean() > 2.0 * p.pet[body & (p.seg == 0)].mean()
    assert checked >= 3


def test_anatomy_in_numbers():
    p = make_phantom(1, seed=0, size="small")
    nz = p.pet.shape[0]
    head = slice(int(nz * 0.78), nz)           # index grows towards the head (direction +z)
    lungs = (p.ct > -900) & (p.ct < -700)
    body = p.ct > -500
    assert lungs.sum() * np.prod(SIZES["small"].spacing) / 1e6 > 2.0  # litres of lung
    assert p.pet[lungs].mean() < 1.0 and p.pet[body].mean() > p.pet[lungs].mean()
    assert p.pet[head].max() > 5.0             # the brain takes up FDG
    bone = p.ct > 300
    assert bone.sum() > 0
    hottest = np.unravel_index(np.argmax(p.pet), p.pet.shape)
    assert hottest[0] < nz * 0.35              # bladder (or renal pelvis) is the hottest: low in the body
    outside = ~body
    assert np.median(p.pet[outside]) < 0.05    # air has (nearly) no activity


@pytest.mark.parametrize("seed", [0, 1])
def test_lesion_free_studies_have_empty_labels(seed):
    index = next(i for i in range(4) if not has_lesions(i, seed))
    assert not make_phantom(index, seed=seed, size="tiny").seg.any()
