"""DICOM SEG writing, checked against the phantom's DICOM PT series read by independent means.

The slice order of the PT files comes from GDCM (SimpleITK's series sorter), the expected
frames from masks built here, and the written SEG is read back with pydicom (and highdicom's
reader as a second opinion) and validated with dicom3tools' ``dciodvfy`` where installed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")
hd = pytest.importorskip("highdicom")
sitk = pytest.importorskip("SimpleITK")

from l2s_engine import __version__  # noqa: E402
from l2s_engine.errors import OutputError  # noqa: E402
from l2s_engine.io.dicom_seg import write_dicom_seg  # noqa: E402
from l2s_engine.phantoms import make_phantom  # noqa: E402
from l2s_engine.phantoms.dicom import Acquisition, write_dicom_study  # noqa: E402

SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """The tiny phantom as DICOM: (phantom, PT files in slice order, CT files)."""
    phantom = make_phantom(0, 0, "tiny")
    folder = write_dicom_study(phantom, tmp_path_factory.mktemp("dicom"))
    pt = [Path(f) for f in sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder / "PT"))]
    ct = sorted((folder / "CT").iterdir())
    return phantom, pt, ct


@pytest.fixture(scope="module")
def mask(study):
    """The phantom's lesions in the files' row/column order, plus boxes; slice 10 left empty."""
    phantom, pt, _ = study
    mask = np.ascontiguousarray(phantom.seg[:, ::-1, ::-1]).astype(np.uint8)
    mask[2, 3:7, 5:9] = 1
    mask[20:23, 0:2, 40:48] = 1
    mask[-1, -1, -1] = 1            # the last voxel: catches an off-by-one in row or column order
    mask[10] = 0
    assert mask.shape == (len(pt), 40, 48)
    return mask


def _uid_to_z(files):
    return {pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID: z for z, f in enumerate(files)}


def _frame_refs(ds):
    return [item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
            for item in ds.PerFrameFunctionalGroupsSequence]


def _digest(files):
    return [hashlib.sha256(Path(f).read_bytes()).hexdigest() for f in files]


def test_the_tests_slice_order_matches_the_phantom(study):
    # the expected masks rely on GDCM's order and the (y, x) flip: check them on the PET itself
    phantom, pt, _ = study
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([str(f) for f in pt])
    reader.SetOutputPixelType(sitk.sitkFloat32)
    suv = sitk.GetArrayFromImage(reader.Execute()) * Acquisition().suv_factor
    expected = phantom.pet[:, ::-1, ::-1]
    np.testing.assert_allclose(suv, expected, atol=1e-3 * float(expected.max()))


def test_frames_equal_the_mask_voxel_for_voxel(study, mask, tmp_path):
    _, pt, _ = study
    before, mask_before = _digest(pt), mask.copy()
    out = write_dicom_seg(mask, pt, tmp_path / "seg.dcm")
    assert out == tmp_path / "seg.dcm"
    ds = pydicom.dcmread(out)
    assert ds.SOPClassUID == SEG_SOP_CLASS and ds.SegmentationType == "BINARY"
    frames = ds.pixel_array.reshape(int(ds.NumberOfFrames), ds.Rows, ds.Columns)
    to_z = _uid_to_z(pt)
    zs = [to_z[uid] for uid in _frame_refs(ds)]
    non_empty = [z for z in range(len(pt)) if mask[z].any()]
    assert sorted(zs) == non_empty            # one frame per lesion slice, none for empty ones
    assert 10 not in zs and len(non_empty) >= 8
    for frame, z, item in zip(frames, zs, ds.PerFrameFunctionalGroupsSequence):
        np.testing.assert_array_equal(frame, mask[z], err_msg=f"slice {z}")
        source = pydicom.dcmread(pt[z], stop_before_pixels=True)
        np.testing.assert_allclose([float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient],
                                   [float(v) for v in source.ImagePositionPatient])
    # highdicom's own reader, all source slices in the test's order, missing frames empty
    uids = list(to_z)
    volume = hd.seg.segread(out).get_pixels_by_source_instance(
        source_sop_instance_uids=uids, segment_numbers=[1], assert_missing_frames_are_empty=True)
    np.testing.assert_array_equal(volume[..., 0], mask)
    assert _digest(pt) == before and np.array_equal(mask, mask_before)  # inputs untouched


def test_references_and_descriptions(study, mask, tmp_path):
    _, pt, _ = study
    source = pydicom.dcmread(pt[0], stop_before_pixels=True)
    ds = pydicom.dcmread(write_dicom_seg(mask, pt, tmp_path / "seg.dcm", series_number=9123))
    series = ds.ReferencedSeriesSequence
    assert [s.SeriesInstanceUID for s in series] == [source.SeriesInstanceUID]
    assert {i.ReferencedSOPInstanceUID for i in series[0].ReferencedInstanceSequence} == set(_uid_to_z(pt))
    for key in ("FrameOfReferenceUID", "StudyInstanceUID", "PatientID", "PatientName"):
        assert ds[key].value == source[key].value, key
    assert ds.SeriesInstanceUID != source.SeriesInstanceUID and ds.SOPInstanceUID != source.SOPInstanceUID
    assert ds.SeriesNumber == 9123 and ds.Modality == "SEG"
    assert ds.Manufacturer == "l2s-engine" and ds.SoftwareVersions == __version__
    assert ds.SeriesDescription == "L2SNet lesion segmentation"
    (segment,) = ds.SegmentSequence
    assert segment.SegmentNumber == 1 and segment.SegmentLabel == "lesion"
    assert segment.SegmentAlgorithmType == "AUTOMATIC"
    algorithm = segment.SegmentationAlgorithmIdentificationSequence[0]
    assert (algorithm.AlgorithmName, algorithm.AlgorithmVersion) == ("l2s-engine L2SNet", __version__)
    family = algorithm.AlgorithmFamilyCodeSequence[0]
    assert (family.CodeValue, family.CodingSchemeDesignator) == ("123110", "DCM")
    category = segment.SegmentedPropertyCategoryCodeSequence[0]
    kind = segment.SegmentedPropertyTypeCodeSequence[0]
    assert (category.CodeValue, category.CodingSchemeDesignator) == ("49755003", "SCT")
    assert (kind.CodeValue, kind.CodingSchemeDesignator) == ("108369006", "SCT")
    for uid in (ds.SeriesInstanceUID, ds.SOPInstanceUID):
        assert pydicom.uid.UID(uid).is_valid


@pytest.mark.parametrize("empty", [False, True], ids=["lesions", "all-zero"])
def test_dciodvfy_reports_no_error(study, mask, tmp_path, empty):
    dciodvfy = shutil.which("dciodvfy")
    if dciodvfy is None:
        pytest.skip("dciodvfy (dicom3tools) is not installed: apt-get install dicom3tools")
    _, pt, _ = study
    out = write_dicom_seg(np.zeros_like(mask) if empty else mask, pt, tmp_path / "seg.dcm")
    run = subprocess.run([dciodvfy, str(out)], capture_output=True, text=True, timeout=120)
    lines = (run.stdout + run.stderr).splitlines()
    for line in lines:
        if line.startswith("Warning"):
            print(line)
    assert [line for line in lines if line.startswith("Error")] == []


def test_all_zero_mask_is_one_empty_frame_on_the_first_slice(study, mask, tmp_path):
    _, pt, _ = study
    ds = pydicom.dcmread(write_dicom_seg(np.zeros_like(mask), pt, tmp_path / "seg.dcm"))
    assert ds.SOPClassUID == SEG_SOP_CLASS and int(ds.NumberOfFrames) == 1
    assert not ds.pixel_array.any()
    assert [_uid_to_z(pt)[uid] for uid in _frame_refs(ds)] == [0]
    assert len(ds.ReferencedSeriesSequence[0].ReferencedInstanceSequence) == len(pt)
    volume = hd.seg.segread(tmp_path / "seg.dcm").get_pixels_by_source_instance(
        source_sop_instance_uids=list(_uid_to_z(pt)), segment_numbers=[1], assert_missing_frames_are_empty=True)
    assert volume.shape[:3] == mask.shape and not volume.any()


@pytest.mark.parametrize("shape_of", [lambda m: m[:-1], lambda m: m.transpose(0, 2, 1), lambda m: m[0]],
                         ids=["slice-missing", "rows-columns-swapped", "2d"])
def test_wrong_shape_is_refused(study, mask, tmp_path, shape_of):
    _, pt, _ = study
    with pytest.raises(OutputError, match=r"mask shape .* \(slices, Rows, Columns\) = \(64, 40, 48\)"):
        write_dicom_seg(shape_of(mask), pt, tmp_path / "seg.dcm")
    assert list(tmp_path.iterdir()) == []


def test_protected_paths_and_sources_are_refused(study, mask, tmp_path):
    _, pt, _ = study
    before = _digest(pt)
    protected = tmp_path / "PET.nii.gz"
    protected.write_bytes(b"input")
    with pytest.raises(OutputError, match="refusing to overwrite an input"):
        write_dicom_seg(mask, pt, protected, protected=(protected,))
    with pytest.raises(OutputError, match="refusing to overwrite an input"):
        write_dicom_seg(mask, pt, pt[5])
    assert protected.read_bytes() == b"input" and _digest(pt) == before


def test_files_of_another_series_are_refused(study, mask, tmp_path):
    _, pt, ct = study
    with pytest.raises(OutputError, match=f"source {ct[0]} has SeriesInstanceUID .* one PT series"):
        write_dicom_seg(mask, [*pt[:-1], ct[0]], tmp_path / "seg.dcm")
    assert list(tmp_path.iterdir()) == []


def test_missing_highdicom_names_the_install(study, mask, tmp_path, monkeypatch):
    _, pt, _ = study
    monkeypatch.setitem(sys.modules, "highdicom", None)  # makes `import highdicom` raise ImportError
    with pytest.raises(OutputError, match="pip install highdicom"):
        write_dicom_seg(mask, pt, tmp_path / "seg.dcm")


def test_failed_save_keeps_the_old_file_and_leaves_no_partial(study, mask, tmp_path, monkeypatch):
    _, pt, _ = study
    target = tmp_path / "seg.dcm"
    target.write_bytes(b"old")

    def disk_full(self, filename, **kwargs):
        Path(filename).write_bytes(b"DICM partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(hd.seg.Segmentation, "save_as", disk_full)
    with pytest.raises(OutputError, match="No space left on device"):
        write_dicom_seg(mask, pt, target)
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["seg.dcm"]


def test_silently_truncated_file_is_caught_by_the_read_back(study, mask, tmp_path, monkeypatch):
    _, pt, _ = study
    save_as = hd.seg.Segmentation.save_as

    def truncated(self, filename, **kwargs):
        save_as(self, filename, **kwargs)
        data = Path(filename).read_bytes()
        Path(filename).write_bytes(data[: len(data) - 100])

    monkeypatch.setattr(hd.seg.Segmentation, "save_as", truncated)
    with pytest.raises(OutputError, match="written SEG is incomplete or wrong"):
        write_dicom_seg(mask, pt, tmp_path / "seg.dcm")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root writes into read-only folders (the monkeypatched failures above cover it)")
def test_read_only_folder_is_refused_and_left_empty(study, mask, tmp_path):
    _, pt, _ = study
    folder = tmp_path / "out"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(OutputError, match="fix the permissions"):
            write_dicom_seg(mask, pt, folder / "seg.dcm")
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o755)


def test_output_folder_that_is_a_file_is_refused(study, mask, tmp_path):
    _, pt, _ = study
    (tmp_path / "out").write_bytes(b"a file")   # fails for root too, unlike a read-only folder
    with pytest.raises(OutputError, match="cannot create a file in its folder"):
        write_dicom_seg(mask, pt, tmp_path / "out" / "seg.dcm")
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
