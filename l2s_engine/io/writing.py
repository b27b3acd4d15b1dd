"""Writing masks on exactly the PET grid, atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import OutputError
from ..geometry import Geometry
from .images import image_from_array, write_image_atomic

MASK_FORMATS = (".nii.gz", ".mha")


def write_mask(mask: np.ndarray, geometry: Geometry, path: Path, protected: tuple[Path, ...] = ()) -> Path:
    """Write a binary mask as uint8 on ``geometry`` (origin, spacing, direction copied).

    Args:
        mask: (z, y, x) array; non-zero voxels become 1.
        geometry: the PET grid of the study.
        path: the output file, ending in .nii.gz or .mha.
        protected: input files that must never be overwritten (e.g. the study's images).

    Raises:
        OutputError: wrong shape, unsupported suffix, or ``path`` is a protected input.
    """
    path = Path(path)
    if not any(path.name.lower().endswith(s) for s in MASK_FORMATS):
        raise OutputError(f"{path}: masks are written as {' or '.join(MASK_FORMATS)}")
    if tuple(mask.shape) != geometry.shape:
        raise OutputError(f"{path}: mask shape {tuple(mask.shape)} is not the PET grid shape {geometry.shape}")
    target = path.resolve()
    if any(target == Path(p).resolve() for p in protected):
        raise OutputError(f"{path}: refusing to overwrite an input image; choose another output folder")
    image = image_from_array((mask != 0).astype(np.uint8), geometry)
    return write_image_atomic(image, path)
