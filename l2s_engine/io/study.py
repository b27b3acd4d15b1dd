"""A loaded study and the CT-onto-PET-grid step every input format shares (NIfTI, DICOM)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import CoverageError
from ..geometry import Geometry
from .discovery import StudyRef
from .images import geometry_of

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
