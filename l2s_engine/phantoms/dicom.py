"""Writing a phantom study as the DICOM series a PET/CT scanner sends: a PT and a CT series.

The PET is stored as a scanner stores it: activity concentration in Bq/mL (Units BQML, decay
corrected to the series start, attenuation corrected), int16 with a rescale slope of its own
per slice, so that reading it takes the per-slice rescale and the SUV factor of the headers.
The series are written in the scanner's orientation (rows along patient left, columns along
patient posterior: ImageOrientationPatient 1,0,0,0,1,0), files named without extension in
an order that is not the slices' order, so readers must sort by position.

UIDs are derived from the case id, so the same phantom gives the same files.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .study import PhantomStudy

PET_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.128"
CT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.2"
F18_HALF_LIFE_S = 6586.2


@dataclass(frozen=True)
class Acquisition:
    """The patient and tracer facts a PT series carries; SUV = Bq/mL x ``suv_factor``."""

    weight_kg: float = 74.0
    dose_bq: float = 3.2e8
    injection: dt.datetime = dt.datetime(2026, 3, 2, 9, 12, 30)
    uptake_s: float = 3725.0   # injection to series start
    half_life_s: float = F18_HALF_LIFE_S

    @property
    def series_start(self) -> dt.datetime:
        """When the PT series starts (its SeriesDate/Time)."""
        return self.injection + dt.timedelta(seconds=self.uptake_s)

    @property
    def suv_factor(self) -> float:
        """SUVbw per Bq/mL: weight in g over the dose decayed to the series start."""
        return self.weight_kg * 1000.0 / (self.dose_bq * 2.0 ** (-self.uptake_s / self.half_life_s))


def write_dicom_study(study: PhantomStudy, out_dir: Path, acquisition: Acquisition = Acquisition(),
                      ct_zoom: int = 1) -> Path:
    """Write ``study`` as ``out_dir/<case_id>/{PT,CT}/<file>`` DICOM files; returns the study folder.

    The arrays are flipped from the phantom's (x, y reversed) grid into the scanner's
    orientation; positions and the frame of reference keep every voxel at its world place.

    Args:
        study: the phantom.
        out_dir: where the study folder goes.
        acquisition: weight, dose and times the PT headers carry.
        ct_zoom: the CT's pixels per PET pixel along rows and columns (a CT is finer than its
            PET): each PET pixel's CT value is repeated ``ct_zoom`` x ``ct_zoom`` times on a grid
            covering the same box, so the CT is not on the PET grid but holds the same picture.
    """
    import pydicom  # noqa: F401  (the writer needs it; the phantoms package does not)

    folder = Path(out_dir) / study.case_id
    geometry = study.geometry
    direction = geometry.direction_matrix()
    if not np.allclose(np.abs(direction), np.eye(3)):
        raise ValueError("the DICOM phantom writer handles axis-aligned grids only")
    # voxel (x, y, z) of the scanner grid is voxel of the phantom grid with x, y reversed where
    # its axis points the other way
    flips = [bool(direction[i, i] < 0) for i in range(3)]
    pet, ct = study.pet, study.ct
    for axis_zyx, flip in ((2, flips[0]), (1, flips[1]), (0, flips[2])):
        if flip:
            pet, ct = np.flip(pet, axis_zyx), np.flip(ct, axis_zyx)
    corner = np.array([(geometry.size[i] - 1) if flips[i] else 0 for i in range(3)], float)
    origin = geometry.index_to_world(corner)
    common = _common(study, acquisition)
    bqml = pet.astype(np.float64) / acquisition.suv_factor
    n = pet.shape[0]
    ct = np.repeat(np.repeat(ct.astype(np.float64), ct_zoom, axis=1), ct_zoom, axis=2)
    # the CT's first pixel centre: the PET pixel's box corner plus half a CT pixel, on each in-plane axis
    ct_spacing = (geometry.spacing[0] / ct_zoom, geometry.spacing[1] / ct_zoom, geometry.spacing[2])
    ct_origin = origin - np.array([geometry.spacing[0] - ct_spacing[0], geometry.spacing[1] - ct_spacing[1], 0.0]) / 2
    for modality, volume, number in (("PT", bqml, 3), ("CT", ct, 2)):
        series_uid = _uid(study.case_id, modality, "series")
        start, spacing = (origin, geometry.spacing) if modality == "PT" else (ct_origin, ct_spacing)
        for z in range(n):
            ds = _slice(common, modality, volume[z], z, n, start, spacing, acquisition)
            ds.SeriesInstanceUID = series_uid
            ds.SeriesNumber = number
            ds.SOPInstanceUID = _uid(study.case_id, modality, str(z))
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            # head first, as scanners number them; file names in neither order
            ds.InstanceNumber = n - z
            path = folder / modality / f"IM{(z * 7919) % 100003:06d}"
            path.parent.mkdir(parents=True, exist_ok=True)
            ds.save_as(path, enforce_file_format=True)
    return folder


def _uid(case_id: str, *parts: str) -> str:
    from pydicom.uid import generate_uid

    return generate_uid(entropy_srcs=["l2s-phantom", case_id, *parts])


def _common(study: PhantomStudy, acquisition: Acquisition) -> dict:
    start = acquisition.series_start
    return {
        "PatientName": f"Phantom^{study.case_id}", "PatientID": study.case_id, "PatientBirthDate": "19600101",
        "PatientSex": "O", "PatientWeight": f"{acquisition.weight_kg:g}", "StudyInstanceUID": _uid(study.case_id, "study"),
        "StudyDate": start.strftime("%Y%m%d"), "StudyTime": start.strftime("%H%M%S"), "StudyID": "1",
        "AccessionNumber": "", "ReferringPhysicianName": "", "StudyDescription": "PET^WholeBody (phantom)",
        "FrameOfReferenceUID": _uid(study.case_id, "frame"), "PositionReferenceIndicator": "",
        "Manufacturer": "l2s-engine phantom", "SeriesDate": start.strftime("%Y%m%d"),
        "SeriesTime": start.strftime("%H%M%S"),
    }


def _slice(common: dict, modality: str, plane: np.ndarray, z: int, len_z: int, origin: np.ndarray, spacing, acquisition):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = PET_SOP_CLASS if modality == "PT" else CT_SOP_CLASS
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    for key, value in common.items():
        setattr(ds, key, value)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.Modality = modality
    ds.SeriesDescription = "PET AC" if modality == "PT" else "CT for attenuation correction"
    ds.ImageType = ["ORIGINAL", "PRIMARY"] if modality == "PT" else ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.ImagePositionPatient = [f"{v:.6f}" for v in origin + np.array([0.0, 0.0, z * spacing[2]])]
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.PixelSpacing = [f"{spacing[1]:.6f}", f"{spacing[0]:.6f}"]  # row spacing (y), column spacing (x)
    ds.SliceThickness = f"{spacing[2]:.6f}"
    ds.Rows, ds.Columns = plane.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    # bed positions are acquired one after another: slices further from the head start later
    acq = acquisition.series_start + dt.timedelta(seconds=120.0 * ((len_z - 1 - z) // 40))
    ds.AcquisitionDate, ds.AcquisitionTime = acq.strftime("%Y%m%d"), acq.strftime("%H%M%S")
    if modality == "PT":
        # each slice its own slope, as scanners store PET: int16 spans the slice's own maximum
        slope = max(float(plane.max()), 1e-3) / 32000.0
        stored = np.round(plane / slope)
        ds.RescaleSlope, ds.RescaleIntercept = f"{slope:.8g}", "0"
        ds.Units, ds.DecayCorrection, ds.CorrectedImage = "BQML", "START", ["DECY", "ATTN", "SCAT", "DTIM"]
        info = Dataset()
        info.Radiopharmaceutical = "Fluorodeoxyglucose"
        info.RadiopharmaceuticalStartDateTime = acquisition.injection.strftime("%Y%m%d%H%M%S.%f")
        info.RadiopharmaceuticalStartTime = acquisition.injection.strftime("%H%M%S.%f")
        info.RadionuclideTotalDose = f"{acquisition.dose_bq:.6g}"
        info.RadionuclideHalfLife = f"{acquisition.half_life_s:g}"
        ds.RadiopharmaceuticalInformationSequence = Sequence([info])
        ds.SeriesType = ["WHOLE BODY", "IMAGE"]
    else:
        stored = np.round(plane) + 1024.0
        ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = "1", "-1024", "HU"
        ds.KVP = "120"
    ds.PixelData = np.clip(stored, -32768, 32767).astype("<i2").tobytes()
    return ds
