"""Loading a discovered study: PET (SUV) and CT (HU) on the PET grid, checked."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import GeometryMismatchError, StudyError
from ..geometry import Geometry
from .dicom_study import load_dicom_study
from .discovery import StudyRef
from .images import check_finite, geometry_of, read_image
from .study import CT_VOXEL_FACTOR, Study, ct_on_pet_grid

log = logging.getLogger(__name__)

@dataclass
class LoadResult:
    """A study, or the error that kept it from loading."""

    ref: StudyRef
    study: Study | None = None
    error: StudyError | None = None


def load_study(ref: StudyRef, max_voxels: int | None = None) -> Study:
    """Read, check and align one study.

    A label that cannot be used (off the PET grid, unreadable) costs the study its metrics, not
    its mask: it is dropped with a warning in ``Study.warnings``.

    Args:
        ref: the study's files.
        max_voxels: refuse a PET or label whose header declares more voxels, or a CT with more
            than ``CT_VOXEL_FACTOR`` times as many (None: no limit).

    Raises:
        StudyError: a subclass naming the file, the value and the remedy.
    """
    if ref.problem is not None:
        raise ref.problem
    if ref.is_dicom:
        return load_dicom_study(ref, max_voxels)
    pet_image = read_image(ref.pet, "PET", max_voxels)
    ct_image = read_image(ref.ct, "CT", None if max_voxels is None else max_voxels * CT_VOXEL_FACTOR)
    pet_geometry = geometry_of(pet_image)
    on_grid = ct_on_pet_grid(pet_image, ct_image, ref.ct)
    resampled, ct_image = on_grid is not ct_image, on_grid
    pet = sitk.GetArrayFromImage(pet_image).astype(np.float32, copy=False)
    ct = sitk.GetArrayFromImage(ct_image).astype(np.float32, copy=False)
    check_finite(pet, ref.pet, "PET")
    check_finite(ct, ref.ct, "CT")
    study = Study(ref.case_id, pet, ct, pet_geometry, None, ref, info={"ct_resampled": resampled})
    if ref.seg is not None:
        try:
            study.seg = _load_seg(ref.seg, pet_geometry, max_voxels)
        except StudyError as exc:
            study.warnings.append(f"label not used, no metrics: {exc}")
            log.warning("%s: label not used, no metrics: %s", ref.case_id, exc)
    return study


def _load_seg(path: Path, pet_geometry: Geometry, max_voxels: int | None) -> np.ndarray:
    image = read_image(path, "SEG", max_voxels)
    geometry = geometry_of(image)
    if not pet_geometry.same_grid(geometry):
        raise GeometryMismatchError(
            path, "the label is not on the PET grid (" + "; ".join(pet_geometry.differences(geometry))
            + "); resample it onto the PET image with nearest-neighbour interpolation", value=geometry)
    seg = sitk.GetArrayFromImage(image)
    check_finite(seg, path, "SEG")
    return (seg > 0).astype(np.uint8)


def load_label(path: Path) -> tuple[np.ndarray, Geometry]:
    """A binary mask file (label or prediction) as uint8 0/1 with its grid."""
    image = read_image(path, "mask")
    mask = sitk.GetArrayFromImage(image)
    check_finite(mask, path, "mask")
    return (mask > 0).astype(np.uint8), geometry_of(image)


def iter_studies(refs: Iterable[StudyRef]) -> Iterator[LoadResult]:
    """Load studies one by one; a study that fails is logged and yielded with its error."""
    for ref in refs:
        try:
            yield LoadResult(ref, study=load_study(ref))
        except StudyError as exc:
            log.error("skipping study %s: %s", ref.case_id, exc)
            yield LoadResult(ref, error=exc)
