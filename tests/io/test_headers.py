"""Raw headers are checked before ITK reads anything: lying spacings and sizes, truncation."""

import gzip
import struct

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import make_autopet_study

from l2s_engine.errors import BadSpacingError, ImageTooLargeError, UnreadableImageError
from l2s_engine.geometry import Geometry
from l2s_engine.io import find_studies, load_study
from l2s_engine.io import images as images_module
from l2s_engine.io.images import read_image

ARRAY = np.arange(5 * 6 * 7, dtype=np.float32).reshape(5, 6, 7)


def _write_nifti(path, pixdim=None, dims=None, compress=False):
    """A valid NIfTI-1 file of ARRAY, then its header fields patched by hand (struct offsets
    of the NIfTI-1 standard: dim at 40, pixdim at 76)."""
    image = sitk.GetImageFromArray(ARRAY)
    image.SetSpacing((2.0, 3.0, 4.0))
    plain = path.with_name(path.name.replace(".gz", "") + ".tmp.nii")
    sitk.WriteImage(image, str(plain), False)
    raw = bytearray(plain.read_bytes())
    plain.unlink()
    assert struct.unpack("<i", raw[:4])[0] == 348
    if pixdim is not None:
        raw[80:92] = struct.pack("<3f", *pixdim)
    if dims is not None:
        raw[40:56] = struct.pack("<8h", len(dims), *dims, *([1] * (7 - len(dims))))
    path.write_bytes(gzip.compress(bytes(raw)) if compress else bytes(raw))
    return path


@pytest.fixture
def no_itk_read(monkeypatch):
    """Fail the test if ITK is asked to read the pixels: the raw check must refuse first."""
    def refuse(*args, **kwargs):
        raise AssertionError("ITK read the image before the header was checked")

    monkeypatch.setattr(images_module.sitk, "ReadImage", refuse)


@pytest.mark.parametrize("compress", [False, True])
def test_itk_reads_a_zero_pixdim_as_one_mm_so_it_is_refused_first(tmp_path, compress):
    path = _write_nifti(tmp_path / ("a.nii.gz" if compress else "a.nii"), pixdim=(2.0, 0.0, 4.0), compress=compress)
    assert sitk.ReadImage(str(path)).GetSpacing()[1] == 1.0  # what ITK alone would make of it
    with pytest.raises(BadSpacingError, match=r"spacing \(2.0, 0.0, 4.0\).*pixdim"):
        read_image(path, "PET")


@pytest.mark.parametrize("pixdim", [(2.0, float("nan"), 4.0), (2.0, 3.0, float("inf")), (-2.0, 3.0, 4.0)])
def test_nan_infinite_and_negative_pixdim_are_refused(tmp_path, pixdim, no_itk_read):
    path = _write_nifti(tmp_path / "a.nii.gz", pixdim=pixdim, compress=True)
    with pytest.raises(BadSpacingError, match="PET image header declares voxel spacing"):
        read_image(path, "PET")


def test_a_tiny_file_declaring_a_huge_volume_is_refused_without_allocating(tmp_path, no_itk_read):
    path = _write_nifti(tmp_path / "big.nii.gz", dims=(1100, 1100, 1100), compress=True)
    assert path.stat().st_size < 2000
    with pytest.raises(UnreadableImageError, match=r"truncated: its header declares 1100 x 1100 x 1100"):
        read_image(path, "CT")


def test_the_voxel_budget_is_checked_from_the_header(tmp_path, no_itk_read):
    path = _write_nifti(tmp_path / "a.nii.gz", compress=True)
    with pytest.raises(ImageTooLargeError, match=r"7 x 6 x 5 = 210 voxels, more than the limit of 209"):
        read_image(path, "PET", max_voxels=209)


def test_the_voxel_budget_reaches_load_study(tmp_path):
    folder = make_autopet_study(tmp_path / "s", shape=(6, 5, 4))
    (ref,) = find_studies([folder])
    assert load_study(ref, max_voxels=120).pet.shape == (6, 5, 4)
    with pytest.raises(ImageTooLargeError, match="SUV.nii.gz"):
        load_study(ref, max_voxels=119)


@pytest.mark.parametrize("name,compress", [("a.mha", True), ("a.mha", False), ("a.nrrd", False),
                                           ("a.nii", False)])
def test_truncated_files_say_truncated_before_itk(tmp_path, name, compress, no_itk_read):
    path = tmp_path / name
    image = sitk.GetImageFromArray(np.random.default_rng(0).random((20, 30, 40)).astype(np.float32))
    sitk.WriteImage(image, str(path), compress)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) * 2 // 3])
    with pytest.raises(UnreadableImageError, match="CT image is truncated"):
        read_image(path, "CT")


def test_truncated_gzip_nrrd_says_truncated(tmp_path):
    path = tmp_path / "a.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(np.random.default_rng(0).random((20, 30, 40)).astype(np.float32)),
                    str(path), True)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) * 2 // 3])
    with pytest.raises(UnreadableImageError, match="PET image is truncated"):
        read_image(path, "PET")


def test_valid_files_of_every_format_still_read(tmp_path):
    image = sitk.GetImageFromArray(ARRAY)
    image.SetSpacing((2.0, 3.0, 4.0))
    for name in ("a.nii", "a.nii.gz", "a.mha", "a.nrrd"):
        for compress in (False, True):
            sitk.WriteImage(image, str(tmp_path / name), compress)
            got = read_image(tmp_path / name, "PET", max_voxels=210)
            np.testing.assert_array_equal(sitk.GetArrayFromImage(got), ARRAY)
            assert got.GetSpacing() == (2.0, 3.0, 4.0)


def test_coverage_of_hand_built_boxes():
    pet = Geometry((10, 10, 10), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    assert pet.coverage_by(pet) == pytest.approx(1.0)
    assert pet.coverage_by(Geometry((10, 10, 10), (1.0, 1.0, 1.0), (5.0, 0.0, 0.0))) == pytest.approx(0.5)
    assert pet.coverage_by(Geometry((10, 10, 10), (1.0, 1.0, 1.0), (5.0, 5.0, 5.0))) == pytest.approx(0.125)
    assert pet.coverage_by(Geometry((4, 4, 4), (1.0, 1.0, 1.0), (100.0, 0.0, 0.0))) == 0.0
    # the same box described with flipped x and y axes (origin at the other corner): all of it
    flipped = Geometry((10, 10, 10), (1.0, 1.0, 1.0), (9.0, 9.0, 0.0), (-1, 0, 0, 0, -1, 0, 0, 0, 1))
    assert pet.coverage_by(flipped) == pytest.approx(1.0)
    # a CT of half the PET's length at twice the spacing, axes permuted (z first): half
    permuted = Geometry((10, 5, 10), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), (0, 0, 1, 0, 1, 0, 1, 0, 0))
    assert pet.coverage_by(permuted) == pytest.approx(0.5)


def test_a_ct_may_hold_more_voxels_than_the_pet_budget(tmp_path):
    """The budget is per PET voxel; a CT is only read and resampled onto the PET grid."""
    folder = make_autopet_study(tmp_path / "s", shape=(6, 5, 4))  # PET: 120 voxels
    (ref,) = find_studies([folder])
    for shape, ok in (((12, 10, 8), True), ((12, 10, 9), False)):  # 960 = 8 x 120 voxels; 1080
        ct = sitk.GetImageFromArray(np.zeros(shape, np.int16))
        ct.SetSpacing((1.0, 1.0, 1.5))
        sitk.WriteImage(ct, str(folder / "CTres.nii.gz"))
        if ok:
            assert load_study(ref, max_voxels=120).ct.shape == (6, 5, 4)
        else:
            with pytest.raises(ImageTooLargeError, match="CTres.nii.gz.*1,080 voxels, more than the limit of 960"):
                load_study(ref, max_voxels=120)
