import logging

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import LPS_FLIPPED, make_autopet_study, write_volume

from l2s_engine.errors import (
    BadSpacingError,
    CoverageError,
    MissingImageError,
    NonFiniteVoxelsError,
    NotAVolumeError,
    UnreadableImageError,
)
from l2s_engine.io import find_studies, iter_studies, load_study, write_mask

HEADER = dict(spacing=(2.0364, 2.0364, 3.0), origin=(407.27, 394.5, -1123.5), direction=LPS_FLIPPED)


def _only(path):
    (ref,) = find_studies([path])
    return ref


def test_geometry_round_trip_lps_flipped_int16_ct(tmp_path):
    folder = make_autopet_study(tmp_path / "study", shape=(7, 6, 5), **HEADER)
    study = load_study(_only(folder))
    pet_image = sitk.ReadImage(str(folder / "SUV.nii.gz"))
    assert sitk.ReadImage(str(folder / "CTres.nii.gz")).GetPixelID() == sitk.sitkInt16
    assert study.pet.dtype == np.float32 and study.ct.dtype == np.float32
    assert study.pet.shape == (7, 6, 5) and study.geometry.shape == (7, 6, 5)
    np.testing.assert_array_equal(study.pet, sitk.GetArrayFromImage(pet_image))
    np.testing.assert_array_equal(study.ct, sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "CTres.nii.gz"))))

    mask = np.zeros(study.pet.shape, np.uint8)
    mask[2:4, 1:3, 0:2] = 1
    mask[6, 5, 4] = 1  # the far corner: catches any axis flip
    for name in ("mask.nii.gz", "mask.mha"):
        written = sitk.ReadImage(str(write_mask(mask, study.geometry, tmp_path / "out" / name)))
        assert written.GetPixelID() == sitk.sitkUInt8
        np.testing.assert_array_equal(sitk.GetArrayFromImage(written), mask)
        if name.endswith(".nii.gz"):  # same format as the PET: bit-identical header values
            assert written.GetOrigin() == pet_image.GetOrigin()
            assert written.GetSpacing() == pet_image.GetSpacing()
            assert written.GetDirection() == pet_image.GetDirection()
        else:
            np.testing.assert_allclose(written.GetOrigin(), pet_image.GetOrigin(), atol=1e-4)
            np.testing.assert_allclose(written.GetSpacing(), pet_image.GetSpacing(), atol=1e-6)
            np.testing.assert_allclose(written.GetDirection(), pet_image.GetDirection(), atol=1e-6)
        # the same physical point holds the same voxel in the PET and the mask
        point = pet_image.TransformIndexToPhysicalPoint((4, 5, 6))
        assert written.TransformPhysicalPointToIndex(point) == (4, 5, 6)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["mask.mha", "mask.nii.gz"]


def test_missing_pet_and_ct(tmp_path):
    write_volume(tmp_path / "a" / "SUV.nii.gz", np.ones((3, 3, 3), np.float32))
    write_volume(tmp_path / "b" / "CTres.nii.gz", np.ones((3, 3, 3), np.int16))
    with pytest.raises(MissingImageError, match="CTres"):
        load_study(_only(tmp_path / "a"))
    with pytest.raises(MissingImageError, match="SUV"):
        load_study(_only(tmp_path / "b"))


@pytest.mark.parametrize("shape", [(5, 6), (2, 3, 4, 5)])
def test_not_a_volume(tmp_path, shape):
    folder = make_autopet_study(tmp_path / "s")
    image = sitk.GetImageFromArray(np.ones(shape, np.float32))
    sitk.WriteImage(image, str(folder / "SUV.nii.gz"))
    with pytest.raises(NotAVolumeError) as info:
        load_study(_only(folder))
    assert info.value.path == folder / "SUV.nii.gz" and "3D" in str(info.value)


def test_multichannel_is_not_a_volume(tmp_path):
    folder = make_autopet_study(tmp_path / "s")
    image = sitk.GetImageFromArray(np.ones((3, 4, 5, 2), np.float32), isVector=True)
    sitk.WriteImage(image, str(folder / "CTres.nii.gz"))
    with pytest.raises(NotAVolumeError, match="CT"):
        load_study(_only(folder))


@pytest.mark.parametrize("role, bad", [
    ("SUV.nii.gz", np.nan), ("CTres.nii.gz", np.inf), ("SUV.nii", -np.inf), ("SUV.mha", np.nan), ("CTres.nrrd", np.inf)])
def test_non_finite_voxels(tmp_path, role, bad):
    # ITK reads NaN/inf in NIfTI files as 0: those are caught by a raw pass over the file
    folder = make_autopet_study(tmp_path / "s")
    array = np.ones((6, 5, 4), np.float64 if role == "SUV.nii" else np.float32)
    array[3, 2, 1] = bad
    (folder / ("SUV.nii.gz" if role.startswith("SUV") else "CTres.nii.gz")).unlink()
    write_volume(folder / role, array)
    with pytest.raises(NonFiniteVoxelsError) as info:
        load_study(_only(folder))
    assert info.value.value == 1 and "(3, 2, 1)" in str(info.value) and info.value.path.name == role


def test_zero_spacing(tmp_path):
    folder = make_autopet_study(tmp_path / "s", seg=False)
    (folder / "SUV.nii.gz").unlink()
    write_volume(folder / "SUV.mha", np.ones((6, 5, 4), np.float32))
    header = (folder / "SUV.mha").read_bytes()
    assert b"ElementSpacing = 2 2 3" in header
    (folder / "SUV.mha").write_bytes(header.replace(b"ElementSpacing = 2 2 3", b"ElementSpacing = 2 0 3"))
    with pytest.raises(BadSpacingError, match="spacing") as info:
        load_study(_only(folder))
    assert info.value.path.name == "SUV.mha"


@pytest.mark.parametrize("name", ["SUV.nii.gz", "SUV.nii", "SUV.mha", "SUV.nrrd"])
def test_truncated_files(tmp_path, name):
    # ITK zero-fills a truncated .nii/.nii.gz without an error; the others it refuses
    folder = make_autopet_study(tmp_path / "s", shape=(20, 18, 16))
    (folder / "SUV.nii.gz").unlink()
    rng = np.random.default_rng(0)
    write_volume(folder / name, rng.uniform(0, 10, (20, 18, 16)).astype(np.float32))
    data = (folder / name).read_bytes()
    (folder / name).write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(UnreadableImageError, match="PET") as info:
        load_study(_only(folder))
    assert info.value.path.name == name


def test_garbage_file(tmp_path):
    folder = make_autopet_study(tmp_path / "s")
    (folder / "SUV.nii.gz").write_text("not an image")
    with pytest.raises(UnreadableImageError):
        load_study(_only(folder))


def test_label_on_another_grid_costs_the_metrics_not_the_study(tmp_path):
    folder = make_autopet_study(tmp_path / "s")
    write_volume(folder / "SEG.nii.gz", np.zeros((6, 5, 4), np.uint8), spacing=(4.0, 4.0, 3.0))
    study = load_study(_only(folder))
    assert study.seg is None and study.pet.shape == (6, 5, 4)
    (warning,) = study.warnings
    assert "label not used" in warning and "spacing" in warning and "SEG.nii.gz" in warning


def test_ct_covering_less_than_half_the_pet_is_refused(tmp_path):
    folder = make_autopet_study(tmp_path / "s", shape=(6, 5, 4))
    # PET box x: [-1, 7) mm (4 voxels of 2 mm, origin 0); a CT shifted 6 mm covers 1/4 of it
    write_volume(folder / "CTres.nii.gz", np.zeros((6, 5, 4), np.int16), origin=(6.0, 0.0, 0.0))
    with pytest.raises(CoverageError, match="covers 25% of the PET") as info:
        load_study(_only(folder))
    assert info.value.value == pytest.approx(0.25)
    # shifted 2 mm: 3/4 covered, resampled with a warning and used
    write_volume(folder / "CTres.nii.gz", np.zeros((6, 5, 4), np.int16), origin=(2.0, 0.0, 0.0))
    ct = load_study(_only(folder)).ct
    assert (ct[..., 0] == -1024).all() and (ct[..., 1:] == 0).all()


def test_one_broken_study_is_reported_and_the_rest_load(tmp_path, caplog):
    make_autopet_study(tmp_path / "a", seed=1)
    broken = make_autopet_study(tmp_path / "b", seed=2)
    (broken / "CTres.nii.gz").write_bytes(b"\x1f\x8b garbage")
    make_autopet_study(tmp_path / "c", seed=3)
    with caplog.at_level(logging.ERROR):
        results = list(iter_studies(find_studies([tmp_path])))
    assert [r.ref.case_id for r in results] == ["a", "b", "c"]
    assert [r.study is not None for r in results] == [True, False, True]
    assert isinstance(results[1].error, UnreadableImageError)
    assert "b" in caplog.text and "CTres" in caplog.text


def _linear(points: np.ndarray) -> np.ndarray:
    return 3.0 * points[..., 0] + 2.0 * points[..., 1] - points[..., 2] + 5.0


def _world(shape_zyx, spacing, origin, direction):
    """World coordinates (x, y, z) of every voxel centre, shape (z, y, x, 3): hand-computed."""
    k, j, i = np.meshgrid(*[np.arange(n) for n in shape_zyx], indexing="ij")
    index = np.stack([i, j, k], axis=-1).astype(np.float64)
    return np.asarray(origin) + (index * np.asarray(spacing)) @ np.asarray(direction).reshape(3, 3).T


def test_ct_on_another_grid_is_resampled_onto_pet(tmp_path, caplog):
    pet_shape, pet_sp, pet_org = (5, 6, 7), (2.0, 2.0, 3.0), (10.0, 20.0, 30.0)
    folder = tmp_path / "s"
    write_volume(folder / "SUV.nii.gz", np.ones(pet_shape, np.float32), pet_sp, pet_org)
    # CT: finer in x, x axis flipped, covering PET columns 0..4 and stopping short of 5..6
    ct_sp, ct_dir = (1.0, 2.0, 1.5), (-1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0)
    ct_shape = (13, 8, 11)  # (z, y, x)
    ct_org = (10.0 + 8.5, 18.0, 27.0)  # its x runs from 18.5 down to 8.5 mm
    ct_world = _world(ct_shape, ct_sp, ct_org, ct_dir)
    write_volume(folder / "CTres.nii.gz", _linear(ct_world).astype(np.float32), ct_sp, ct_org, ct_dir)
    with caplog.at_level(logging.WARNING):
        study = load_study(_only(folder))
    assert "resampling CT onto the PET grid" in caplog.text
    assert study.ct.shape == pet_shape
    pet_world = _world(pet_shape, pet_sp, pet_org, np.eye(3).ravel())
    x = pet_world[..., 0]
    inside, outside = x <= 18.5 - 1e-6, x >= 19.0 + 0.5  # beyond the last CT voxel's half-width
    np.testing.assert_allclose(study.ct[inside], _linear(pet_world)[inside], atol=1e-3)
    assert np.all(study.ct[outside] == -1024.0)
    assert inside.sum() > 0 and outside.sum() > 0
