"""Loading a discovered study: PET (SUV) and CT (HU) on the PET grid, checked."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import GeometryMismatchError, StudyError
from .discovery import StudyRef
from ..geometry import Geometry
from .images import check_finite, geometry_of, read_image

log = logging.getLogger(__name__)

CT_OUTSIDE_HU = -1024.0  # autoPET CTres fill value outside the CT field of view


@dataclass
class Study:
    """One loaded study. Arrays are (z, y, x) on the PET grid ``geometry``.

    Attributes:
        case_id: safe id, used to name outputs.
        pet: SUV, float32.
        ct: Hounsfield units, float32, resampled onto the PET grid when it was not on it.
        geometry: the PET grid; masks are written on exactly this grid.
        seg: the ground-truth lesion mask (uint8 0/1) when the study has one.
        ref: where the files came from.
    """

    case_id: str
    pet: np.ndarray
    ct: np.ndarray
    geometry: Geometry
    seg: np.ndarray | None
    ref: StudyRef


@dataclass
class LoadResult:
    """A study, or the error that kept it from loading."""

    ref: StudyRef
    study: Study | None = None
    error: StudyError | None = None


def load_study(ref: StudyRef) -> Study:
    """Read, check and align one study.

    Raises:
        StudyError: a subclass naming the file, the value and the remedy.
    """
    if ref.problem is not None:
        raise ref.problem
    pet_image = read_image(ref.pet, "PET")
    ct_image = read_image(ref.ct, "CT")
    pet_geometry = geometry_of(pet_image)
    ct_geometry = geometry_of(ct_image)
    if not pet_geometry.same_grid(ct_geometry):
        log.warning("%s: CT grid differs from the PET grid (%s); resampling CT onto the PET grid "
                    "(linear, %g HU outside), as autoPET's CTres", ref.ct,
                    "; ".join(pet_geometry.differences(ct_geometry)), CT_OUTSIDE_HU)
        ct_image = sitk.Resample(ct_image, pet_image, sitk.Transform(), sitk.sitkLinear,
                                 CT_OUTSIDE_HU, sitk.sitkFloat32)
    pet = sitk.GetArrayFromImage(pet_image).astype(np.float32, copy=False)
    ct = sitk.GetArrayFromImage(ct_image).astype(np.float32, copy=False)
    check_finite(pet, ref.pet, "PET")
    check_finite(ct, ref.ct, "CT")
    seg = _load_seg(ref.seg, pet_geometry) if ref.seg is not None else None
    return Study(ref.case_id, pet, ct, pet_geometry, seg, ref)


def _load_seg(path: Path, pet_geometry: Geometry) -> np.ndarray:
    image = read_image(path, "SEG")
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
