import numpy as np
import pytest
import SimpleITK as sitk

from l2s_engine import files as files_module
from l2s_engine.errors import OutputError
from l2s_engine.geometry import Geometry
from l2s_engine.io import write_mask
from l2s_engine.io import images as images_module

GRID = Geometry((4, 3, 2), (2.0, 2.0, 3.0), (1.5, -2.0, 100.0), (-1.0, 0, 0, 0, -1.0, 0, 0, 0, 1.0))


def test_mask_is_binary_uint8(tmp_path):
    mask = np.zeros(GRID.shape, np.float32)
    mask[1, 2, 3] = 0.7
    mask[0, 0, 0] = 5
    out = sitk.ReadImage(str(write_mask(mask, GRID, tmp_path / "m.nii.gz")))
    expected = np.zeros(GRID.shape, np.uint8)
    expected[1, 2, 3] = expected[0, 0, 0] = 1
    np.testing.assert_array_equal(sitk.GetArrayFromImage(out), expected)
    assert out.GetPixelID() == sitk.sitkUInt8


def test_failed_write_keeps_the_old_file_and_leaves_no_partial(tmp_path, monkeypatch):
    target = tmp_path / "m.mha"
    write_mask(np.ones(GRID.shape, np.uint8), GRID, target)
    before = target.read_bytes()

    def half_write(image, name, compress):
        with open(name, "wb") as f:
            f.write(b"partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(images_module.sitk, "WriteImage", half_write)
    with pytest.raises(OutputError, match="disk full"):
        write_mask(np.zeros(GRID.shape, np.uint8), GRID, target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.mha"]


def test_wrong_shape_suffix_and_protected_inputs(tmp_path):
    with pytest.raises(OutputError, match="shape"):
        write_mask(np.zeros((2, 3, 5), np.uint8), GRID, tmp_path / "m.nii.gz")
    with pytest.raises(OutputError, match="nii.gz or .mha"):
        write_mask(np.zeros(GRID.shape, np.uint8), GRID, tmp_path / "m.png")
    pet = tmp_path / "SUV.nii.gz"
    pet.write_bytes(b"input")
    with pytest.raises(OutputError, match="input"):
        write_mask(np.zeros(GRID.shape, np.uint8), GRID, tmp_path / "." / "SUV.nii.gz", protected=(pet,))
    assert pet.read_bytes() == b"input"


def test_written_files_get_the_usual_permissions(tmp_path):
    import os

    umask = os.umask(0)
    os.umask(umask)
    path = write_mask(np.zeros(GRID.shape, np.uint8), GRID, tmp_path / "m.nii.gz")
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


@pytest.mark.parametrize("name", ["m.nii.gz", "m.mha"])
@pytest.mark.parametrize("keep", [0.0, 0.5, 0.95])
def test_a_short_write_that_itk_does_not_report_is_never_published(tmp_path, monkeypatch, name, keep):
    """A full disk: SimpleITK returns normally after writing only part of the file."""
    target = tmp_path / name
    write_mask(np.ones(GRID.shape, np.uint8), GRID, target)
    before = target.read_bytes()
    real_write = images_module.sitk.WriteImage

    def short_write(image, path, compress):
        real_write(image, path, compress)
        with open(path, "r+b") as f:
            f.truncate(int(len(f.read()) * keep))

    monkeypatch.setattr(images_module.sitk, "WriteImage", short_write)
    mask = np.zeros(GRID.shape, np.uint8)
    mask[1, 2, 3] = 1
    with pytest.raises(OutputError, match="incomplete or wrong.*disk full"):
        write_mask(mask, GRID, target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_a_full_disk_at_flush_time_is_an_output_error(tmp_path, monkeypatch):
    def enospc(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files_module.os, "fsync", enospc)
    with pytest.raises(OutputError, match="No space left on device"):
        write_mask(np.ones(GRID.shape, np.uint8), GRID, tmp_path / "m.nii.gz")
    assert list(tmp_path.iterdir()) == []
