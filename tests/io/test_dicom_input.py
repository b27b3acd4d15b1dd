"""DICOM input: discovery, series choice, geometry, SUV on the pixels, and every refusal.

References: SimpleITK's GDCM series reader (a peer: its own slice sort and geometry, float32
output so that per-slice slopes are applied), the phantom's own SUV arrays, and the SUV factor
computed here in float64 from the tags the phantom writer put in.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from l2s_engine.errors import AmbiguousStudyError, GeometryMismatchError, StudyError, UnreadableImageError
from l2s_engine.io import InputPathError, find_studies, load_study
from l2s_engine.io.dicom_select import SeriesChoice
from l2s_engine.phantoms import make_phantom
from l2s_engine.phantoms.dicom import Acquisition, write_dicom_study

WEIGHT, DOSE, UPTAKE, HALF_LIFE = 74.0, 3.2e8, 3725.0, 6586.2  # the writer's defaults, restated


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(0, 0, "tiny")


@pytest.fixture()
def study_dir(tmp_path, phantom) -> Path:
    return write_dicom_study(phantom, tmp_path / "in")


def _peer(folder: Path) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    reader.SetOutputPixelType(sitk.sitkFloat32)
    return reader.Execute()


def _edit(path: Path, **tags) -> None:
    ds = pydicom.dcmread(path)
    for key, value in tags.items():
        setattr(ds, key, value)
    ds.save_as(path)


def _by_position(folder: Path) -> list[Path]:
    """The series' files in slice order, by the peer's sort."""
    return [Path(p) for p in sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder))]


def test_study_found_by_headers_and_named_from_patient_and_date(study_dir, phantom):
    (study_dir / "DICOMDIR_like_notes.txt").write_text("not dicom")
    refs = find_studies([study_dir.parent])
    assert len(refs) == 1
    ref = refs[0]
    assert ref.layout == "dicom" and ref.problem is None
    assert ref.case_id == f"{phantom.case_id}_20260302"
    assert (ref.pet_series.modality, ref.ct_series.modality) == ("PT", "CT")
    assert len(ref.pet_series.files) == phantom.pet.shape[0] == len(ref.ct_series.files)


def test_geometry_and_suv_match_the_peer_reader_and_the_phantom(study_dir, phantom):
    study = load_study(find_studies([study_dir])[0])
    peer = _peer(study_dir / "PT")
    assert study.geometry.size == peer.GetSize()
    np.testing.assert_allclose(study.geometry.spacing, peer.GetSpacing(), atol=1e-4)
    np.testing.assert_allclose(study.geometry.origin, peer.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(study.geometry.direction, peer.GetDirection(), atol=1e-6)
    factor = WEIGHT * 1000.0 / (DOSE * 0.5 ** (UPTAKE / HALF_LIFE))
    np.testing.assert_allclose(study.pet, sitk.GetArrayFromImage(peer) * factor, rtol=1e-5, atol=1e-5)
    # the same voxels as the phantom's SUV (stored in the scanner's orientation: x, y reversed),
    # within the int16 quantisation of each slice (its maximum / 32000)
    expected = phantom.pet[:, ::-1, ::-1]
    step = expected.reshape(expected.shape[0], -1).max(axis=1) / 32000.0
    assert np.all(np.abs(study.pet - expected).max(axis=(1, 2)) <= step * 0.51 + 1e-6)
    np.testing.assert_array_equal(study.ct, phantom.ct[:, ::-1, ::-1].astype(np.float32))
    # the world position of a voxel is kept: phantom voxel (x, y, z) is DICOM voxel (nx-1-x, ny-1-y, z)
    corner = np.array([3, 5, 7])
    flipped = np.array([phantom.geometry.size[0] - 1 - 3, phantom.geometry.size[1] - 1 - 5, 7])
    np.testing.assert_allclose(study.geometry.index_to_world(flipped), phantom.geometry.index_to_world(corner),
                               atol=1e-3)
    suv = study.info["suv"]
    assert suv["factor"] == pytest.approx(factor, rel=1e-9)
    assert study.dicom_source == _by_position(study_dir / "PT")


def test_per_slice_slopes_are_applied(study_dir):
    """SimpleITK's default (int16) read of such a series is far off; ours follows each slice's slope."""
    files = _by_position(study_dir / "PT")
    slopes = {float(pydicom.dcmread(f, stop_before_pixels=True).RescaleSlope) for f in files}
    assert len(slopes) > 10  # the fixture really has per-slice slopes
    study = load_study(find_studies([study_dir])[0])
    z = len(files) // 2
    ds = pydicom.dcmread(files[z])
    by_hand = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    factor = WEIGHT * 1000.0 / (DOSE * 0.5 ** (UPTAKE / HALF_LIFE))
    np.testing.assert_allclose(study.pet[z], by_hand * factor, rtol=1e-6, atol=1e-6)


def test_missing_middle_slice_is_refused(study_dir):
    files = _by_position(study_dir / "PT")
    files[len(files) // 2].unlink()
    with pytest.raises(GeometryMismatchError, match="missing"):
        load_study(find_studies([study_dir])[0])


def test_missing_last_slice_is_refused_by_number_of_slices(study_dir):
    files = _by_position(study_dir / "PT")
    for f in files:
        _edit(f, NumberOfSlices=len(files))
    files[-1].unlink()
    with pytest.raises(GeometryMismatchError, match="NumberOfSlices 64 and holds 63"):
        load_study(find_studies([study_dir])[0])


def test_duplicate_slice_is_refused(study_dir):
    files = _by_position(study_dir / "PT")
    shutil.copy(files[3], files[3].with_name("copy_of_slice"))
    with pytest.raises(GeometryMismatchError, match="same position"):
        load_study(find_studies([study_dir])[0])


def test_gantry_tilt_is_refused(study_dir):
    for k, f in enumerate(_by_position(study_dir / "CT")):
        ds = pydicom.dcmread(f)
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [x, y + 0.5 * k, z]
        ds.save_as(f)
    with pytest.raises(GeometryMismatchError, match="sideways"):
        load_study(find_studies([study_dir])[0])


def test_unreadable_file_beside_the_series_fails_the_study(study_dir):
    victim = _by_position(study_dir / "PT")[-1]
    victim.write_bytes(victim.read_bytes()[:200])  # the DICM marker survives, the header does not
    ref = find_studies([study_dir])[0]
    assert isinstance(ref.problem, StudyError) and victim.name in str(ref.problem)
    with pytest.raises(StudyError):
        load_study(ref)


def test_truncated_pixel_data_is_refused(study_dir):
    victim = _by_position(study_dir / "PT")[5]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) - 1000])
    with pytest.raises(UnreadableImageError, match=victim.name):
        load_study(find_studies([study_dir])[0])


def _copy_series(src: Path, dst: Path, **tags) -> None:
    dst.mkdir()
    uid = pydicom.uid.generate_uid()
    for f in src.iterdir():
        ds = pydicom.dcmread(f)
        ds.SeriesInstanceUID = uid
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        for key, value in tags.items():
            setattr(ds, key, value)
        ds.save_as(dst / f.name)


def test_attenuation_corrected_pt_series_is_chosen(study_dir):
    _copy_series(study_dir / "PT", study_dir / "NAC", CorrectedImage=["DECY"], SeriesNumber=4,
                 SeriesDescription="PET NAC")
    ref = find_studies([study_dir])[0]
    assert ref.problem is None and ref.pet_series.number == 3


def test_two_corrected_pt_series_are_refused_then_chosen_by_number(study_dir):
    _copy_series(study_dir / "PT", study_dir / "PT2", SeriesNumber=5, SeriesDescription="PET AC 2")
    ref = find_studies([study_dir])[0]
    assert isinstance(ref.problem, AmbiguousStudyError)
    assert "--pet-series" in str(ref.problem) and "PET AC 2" in str(ref.problem)
    chosen = find_studies([study_dir], series=SeriesChoice(pet="5"))[0]
    assert chosen.problem is None and chosen.pet_series.description == "PET AC 2"


def test_ct_on_another_frame_of_reference_is_used_with_a_warning(study_dir):
    for f in (study_dir / "CT").iterdir():
        _edit(f, FrameOfReferenceUID=pydicom.uid.generate_uid(entropy_srcs=["other"]))
    ref = find_studies([study_dir])[0]
    assert ref.problem is None and any("FrameOfReferenceUID" in n for n in ref.notes)
    assert any("FrameOfReferenceUID" in w for w in load_study(ref).warnings)


def test_two_cts_on_the_frame_are_refused(study_dir):
    _copy_series(study_dir / "CT", study_dir / "CT2", SeriesNumber=6)
    ref = find_studies([study_dir])[0]
    assert isinstance(ref.problem, AmbiguousStudyError) and "--ct-series" in str(ref.problem)


def test_pt_without_ct_is_refused(study_dir):
    shutil.rmtree(study_dir / "CT")
    ref = find_studies([study_dir])[0]
    assert ref.problem is not None and "no CT image series" in str(ref.problem)


@pytest.mark.parametrize("tag, value, words", [
    ("DecayCorrection", "ADMIN", "ADMIN"),
    ("Units", "PROPCNTS", "PROPCNTS"),
    ("CorrectedImage", ["DECY"], "ATTN"),
])
def test_suv_inputs_that_cannot_be_trusted_fail_the_study(study_dir, tag, value, words):
    for f in (study_dir / "PT").iterdir():
        _edit(f, **{tag: value})
    with pytest.raises(StudyError, match=words):
        load_study(find_studies([study_dir])[0])


def test_missing_weight_fails_the_study(study_dir):
    for f in (study_dir / "PT").iterdir():
        ds = pydicom.dcmread(f)
        del ds.PatientWeight
        ds.save_as(f)
    with pytest.raises(StudyError, match="0010,1030"):
        load_study(find_studies([study_dir])[0])


def test_two_studies_of_one_patient_on_one_day_get_distinct_ids(tmp_path, phantom):
    first = write_dicom_study(phantom, tmp_path / "a")
    second = write_dicom_study(phantom, tmp_path / "b", Acquisition(weight_kg=80.0))
    for f in second.rglob("*"):
        if f.is_file():
            ds = pydicom.dcmread(f)
            ds.StudyInstanceUID = "1.2.3.4.5"
            ds.SeriesInstanceUID = pydicom.uid.generate_uid(entropy_srcs=[ds.SeriesInstanceUID])
            ds.SeriesNumber = 7 if ds.Modality == "PT" else 8
            ds.save_as(f)
    ids = sorted(r.case_id for r in find_studies([tmp_path]))
    assert len(set(ids)) == 2 and all(i.startswith(f"{phantom.case_id}_20260302") for i in ids)
    assert first != second


def test_finer_ct_is_resampled_onto_the_pet_grid(tmp_path, phantom):
    """A CT at twice the PET's in-plane resolution, each PET pixel repeated 2 x 2: linear
    resampling at the PET voxel centres (midway between CT pixel centres) gives the PET-grid CT back."""
    folder = write_dicom_study(phantom, tmp_path / "in", ct_zoom=2)
    assert pydicom.dcmread(next((folder / "CT").iterdir())).Rows == 2 * phantom.pet.shape[1]
    study = load_study(find_studies([folder])[0])
    np.testing.assert_allclose(study.ct, phantom.ct[:, ::-1, ::-1], atol=1e-3)
    assert study.info["ct_resampled"] is True


def test_zero_pixel_spacing_is_refused(study_dir):
    for f in (study_dir / "PT").iterdir():
        _edit(f, PixelSpacing=["0", "0"])
    with pytest.raises(StudyError, match="PixelSpacing"):
        load_study(find_studies([study_dir])[0])


def _rewrite(folder: Path, edit, implicit: bool = False) -> None:
    for f in folder.iterdir():
        ds = pydicom.dcmread(f)
        edit(ds)
        if implicit:  # no VR in the file: a private value's VR comes from pydicom's private dictionary
            ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
        ds.save_as(f, enforce_file_format=True)


def test_philips_counts_with_the_private_suv_factor_implicit_vr(study_dir):
    def philips(ds):
        ds.Units = "CNTS"
        ds.private_block(0x7053, "Philips PET Private Group", create=True).add_new(0x00, "DS", "0.000456")

    _rewrite(study_dir / "PT", philips, implicit=True)
    study = load_study(find_studies([study_dir])[0])
    assert study.info["suv"]["factor"] == pytest.approx(0.000456, rel=1e-12)
    assert "Philips" in study.info["suv"]["method"]
    files = _by_position(study_dir / "PT")
    ds = pydicom.dcmread(files[7])
    np.testing.assert_allclose(study.pet[7], ds.pixel_array * float(ds.RescaleSlope) * 0.000456, rtol=1e-6, atol=1e-7)


def test_ge_post_injection_time_when_the_series_time_is_after_the_acquisitions(study_dir):
    """A series made after the scan (SeriesTime 12:00): the GE private scan time is taken."""
    def ge(ds):
        ds.SeriesTime = "120000"
        ds.private_block(0x0009, "GEMS_PETD_01", create=True).add_new(0x0D, "DT", "20260302101000")

    _rewrite(study_dir / "PT", ge)
    study = load_study(find_studies([study_dir])[0])
    decay = (10 * 3600 + 10 * 60) - (9 * 3600 + 12 * 60 + 30)  # 10:10:00 - 09:12:30
    factor = WEIGHT * 1000.0 / (DOSE * 0.5 ** (decay / HALF_LIFE))
    assert study.info["suv"]["factor"] == pytest.approx(factor, rel=1e-9)


def test_a_study_without_pt_is_named_and_passed_over(study_dir, caplog):
    shutil.rmtree(study_dir / "PT")
    with pytest.raises(InputPathError, match="no study found"):
        find_studies([study_dir])
    assert "holds no PT series" in caplog.text and "CT series 2" in caplog.text
