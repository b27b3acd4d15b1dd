"""Loading a discovered study: PET (SUV) and CT (HU) on the PET grid, checked."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import CoverageError, GeometryMismatchError, StudyError
from .discovery import StudyRef
from ..geometry import Geometry
from .images import check_finite, geometry_of, read_image

log = logging.getLogger(__name__)

CT_OUTSIDE_HU = -1024.0  # autoPET CTres fill value outside the CT field of view
# A CT covering less of the PET's box than this is refused: the 3D net would see air (the fill
# value) where the body is, and the mask would be wrong without a word.
MIN_CT_COVERAGE = 0.5
# The voxel budget is sized for the PET grid, on which every array of the pipeline lives (about
# 48 bytes per voxel); a CT is only read (2-4 bytes per voxel) and resampled onto that grid, so
# a fine-sliced CT may hold this many times more voxels (512 x 512 x 2500 is a real one).
CT_VOXEL_FACTOR = 8


@dataclass
class Study:
    """One loaded study. Arrays are (z, y, x) on the PET grid ``geometry``.

    Attributes:
        case_id: safe id, used to name outputs.
        pet: SUV, float32.
        ct: Hounsfield units, float32, resampled onto the PET grid when it was not on it.
        geometry: the PET grid; masks are written on exactly this grid.
        seg: the ground-truth lesion mask (uint8 0/1) when the study has one and it is usable.
        ref: where the files came from.
        warnings: what was noticed and worked around (e.g. a label off the PET grid, not used).
        info: what the report records of how the inputs were read: whether the CT was resampled
            onto the PET grid (``ct_resampled``); DICOM: the series and the SUV factor.
        dicom_source: DICOM studies: the PT files in the mask's z order (what a DICOM SEG references).
    """

    case_id: str
    pet: np.ndarray
    ct: np.ndarray
    geometry: Geometry
    seg: np.ndarray | None
    ref: StudyRef
    warnings: list[str] = field(default_factory=list)
    info: dict = field(default_factory=dict)
    dicom_source: list[Path] = field(default_factory=list)


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
        from .dicom_study import load_dicom_study

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


def ct_on_pet_grid(pet_image: sitk.Image, ct_image: sitk.Image, ct_path: Path, expected: bool = False) -> sitk.Image:
    """The CT on the PET grid: itself when the grids coincide, else resampled (linear, -1024 HU fill).

    ``expected``: the CT is not expected on the PET grid (a DICOM CT series never is), so the
    resampling is logged as information, not as a warning.

    Raises:
        CoverageError: the CT covers less than ``MIN_CT_COVERAGE`` of the PET's box.
    """
    pet_geometry, ct_geometry = geometry_of(pet_image), geometry_of(ct_image)
    if pet_geometry.same_grid(ct_geometry):
        return ct_image
    covered = pet_geometry.coverage_by(ct_geometry)
    if covered < MIN_CT_COVERAGE:
        raise CoverageError(
            ct_path, f"the CT covers {covered:.0%} of the PET's field of view (at least "
            f"{MIN_CT_COVERAGE:.0%} needed; CT origin {tuple(round(v, 1) for v in ct_geometry.origin)}, "
            f"PET origin {tuple(round(v, 1) for v in pet_geometry.origin)} mm); check that this CT belongs "
            "to this PET and that both headers' origin and direction are right", value=round(covered, 4))
    log.log(logging.INFO if expected else logging.WARNING,
            "%s: CT grid differs from the PET grid (%s); resampling CT onto the PET grid (linear, %g HU outside, "
            "CT covers %.0f%% of the PET), as autoPET's CTres", ct_path,
            "; ".join(pet_geometry.differences(ct_geometry)), CT_OUTSIDE_HU, 100 * covered)
    return sitk.Resample(ct_image, pet_image, sitk.Transform(), sitk.sitkLinear, CT_OUTSIDE_HU, sitk.sitkFloat32)


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
