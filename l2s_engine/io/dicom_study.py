"""Loading a DICOM study: the PT series as SUVbw and the CT series in HU on the PET grid."""

from __future__ import annotations

import logging

import numpy as np
import SimpleITK as sitk

from ..suv import suv_factor
from .dicom_pet import pet_series_header
from .dicom_volume import read_series
from .discovery import StudyRef
from .images import check_finite, image_from_array
from .study import CT_VOXEL_FACTOR, Study, ct_on_pet_grid

log = logging.getLogger(__name__)


def load_dicom_study(ref: StudyRef, max_voxels: int | None = None) -> Study:
    """Read a study found by DICOM discovery (``ref.pet_series``, ``ref.ct_series``).

    Raises:
        StudyError: a subclass naming the file, the tag or value, and the remedy (SUV inputs
            missing or inconsistent, a series that is not one regular volume, ...).
    """
    pet = read_series(ref.pet_series, "PET", max_voxels)
    factor = suv_factor(pet_series_header(pet.headers, ref.pet_series.files[0]))
    suv = pet.values
    suv *= np.float32(factor.factor)
    ct = read_series(ref.ct_series, "CT", None if max_voxels is None else max_voxels * CT_VOXEL_FACTOR)
    ct_values = ct.values
    if not pet.geometry.same_grid(ct.geometry):
        on_grid = ct_on_pet_grid(image_from_array(suv, pet.geometry), image_from_array(ct.values, ct.geometry),
                                 ct.files[0], expected=True)
        ct_values = sitk.GetArrayFromImage(on_grid).astype(np.float32, copy=False)
    check_finite(suv, pet.files[0], "PET")
    check_finite(ct_values, ct.files[0], "CT")
    study = Study(ref.case_id, suv, ct_values, pet.geometry, None, ref, warnings=list(ref.notes))
    study.dicom_source = pet.files
    study.info = {"ct_resampled": not pet.geometry.same_grid(ct.geometry),
                  "dicom": {role: _describe(series) for role, series in (("pet", ref.pet_series),
                                                                         ("ct", ref.ct_series))},
                  "suv": factor.to_json()}
    for note in ref.notes:
        log.warning("%s: %s", ref.case_id, note)
    return study


def _describe(series) -> dict:
    return {"series_uid": series.uid, "series_number": series.number, "description": series.description,
            "files": len(series.files), "folder": str(series.folder), "frame_of_reference": series.frame_uid}
