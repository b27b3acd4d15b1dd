"""Reading, validating and atomically writing single 3D images through SimpleITK."""

from __future__ import annotations

import logging
import os
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import (
    BadSpacingError,
    NonFiniteVoxelsError,
    NotAVolumeError,
    OutputError,
    UnreadableImageError,
)
from ..geometry import Geometry
from .nifti import NIFTI_READ_ERRORS, scan_nifti

log = logging.getLogger(__name__)

# Longest first, so that "x.nii.gz" is split as ("x", ".nii.gz") and not (".gz").
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".nhdr")


def split_image_name(name: str) -> tuple[str, str] | None:
    """Split a file name into (stem, image suffix), or None when it is not an image name."""
    lower = name.lower()
    for suffix in IMAGE_SUFFIXES:
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)], name[-len(suffix):]
    return None


def geometry_of(image: sitk.Image) -> Geometry:
    """The grid of a SimpleITK image."""
    return Geometry(
        size=tuple(int(v) for v in image.GetSize()),
        spacing=tuple(float(v) for v in image.GetSpacing()),
        origin=tuple(float(v) for v in image.GetOrigin()),
        direction=tuple(float(v) for v in image.GetDirection()),
    )


def image_from_array(array: np.ndarray, geometry: Geometry) -> sitk.Image:
    """A SimpleITK image holding ``array`` (z, y, x) on ``geometry``."""
    if tuple(array.shape) != geometry.shape:
        raise ValueError(f"array shape {array.shape} does not match the grid {geometry.shape} (z, y, x)")
    image = sitk.GetImageFromArray(np.ascontiguousarray(array))
    image.SetSpacing(geometry.spacing)
    image.SetOrigin(geometry.origin)
    image.SetDirection(geometry.direction)
    return image


def read_image(path: Path, role: str) -> sitk.Image:
    """Read one 3D single-channel image and check its header.

    Args:
        path: the image file.
        role: what the image is for ("PET", "CT", "SEG"), named in error messages.

    Raises:
        UnreadableImageError: SimpleITK cannot read the file, or a NIfTI file is truncated.
        NotAVolumeError: the image is not 3D or has several channels.
        NonFiniteVoxelsError: a NIfTI file holds NaN/inf voxels (ITK would read them as 0;
            other formats are checked on the array by ``check_finite``).
        BadSpacingError: a spacing is zero, negative or not finite.
    """
    path = Path(path)
    with ThreadPoolExecutor(1) as pool:
        # The raw NIfTI pass decompresses the file a second time: run it beside ITK's read.
        scan = pool.submit(scan_nifti, path) if path.name.lower().endswith((".nii", ".nii.gz")) else None
        image = _itk_read(path, role)
        if scan is not None:
            _check_nifti_scan(scan, path, role)
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise NotAVolumeError(
            path, f"the {role} image must be one 3D volume with one channel, got a "
            f"{image.GetDimension()}D image of size {image.GetSize()} with "
            f"{image.GetNumberOfComponentsPerPixel()} component(s); export a single 3D series",
            value=image.GetSize())
    spacing = image.GetSpacing()
    if not all(np.isfinite(s) and s > 0 for s in spacing):
        raise BadSpacingError(
            path, f"the {role} image has spacing {spacing}: every spacing must be a positive "
            "number of millimetres; fix the header (e.g. pixdim in NIfTI, ElementSpacing in MHA)",
            value=spacing)
    return image


def _itk_read(path: Path, role: str) -> sitk.Image:
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as exc:  # SimpleITK raises RuntimeError for every read failure
        if "spacing" in str(exc).lower():
            # ITK refuses zero or NaN spacings while reading (MetaImage, NRRD headers).
            raise BadSpacingError(
                path, f"the {role} image header declares a zero or invalid voxel spacing, which ITK "
                "refuses; fix the header (ElementSpacing in MHA, spacings in NRRD, pixdim in NIfTI)",
                value=_spacing_line(str(exc))) from exc
        first_line = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unknown error"
        raise UnreadableImageError(
            path, f"cannot read the {role} image ({first_line}); check that the file is complete "
            f"and in a format SimpleITK reads ({', '.join(IMAGE_SUFFIXES)})") from exc


def _check_nifti_scan(pending: Future, path: Path, role: str) -> None:
    """Raise on a truncated or non-finite NIfTI, which ITK would silently zero-fill."""
    try:
        scan = pending.result()
    except NIFTI_READ_ERRORS as exc:
        raise UnreadableImageError(
            path, f"the {role} image data cannot be read to the end ({exc}); the file is damaged "
            "or truncated: copy or export it again") from exc
    if not scan.complete:
        raise UnreadableImageError(
            path, f"the {role} image is truncated: {scan.data_bytes} of {scan.expected_bytes} data "
            "bytes; copy or export it again", value=scan.data_bytes)
    if scan.non_finite:
        first = tuple(int(i) for i in np.unravel_index(scan.first_non_finite, scan.shape_zyx))
        raise NonFiniteVoxelsError(
            path, f"the {role} image holds {scan.non_finite} NaN/infinite voxel(s) (first at "
            f"z,y,x={first}); re-export the image or replace those voxels before inference",
            value=scan.non_finite)


def _spacing_line(message: str) -> str:
    lines = [line for line in message.splitlines() if "spacing" in line.lower()]
    return lines[-1].strip() if lines else message.strip()


def check_finite(array: np.ndarray, path: Path, role: str) -> None:
    """Raise NonFiniteVoxelsError when ``array`` holds NaN or infinite values."""
    if np.issubdtype(array.dtype, np.integer):
        return
    finite = np.isfinite(array)
    if not finite.all():
        bad = int(finite.size - np.count_nonzero(finite))
        first = tuple(int(i) for i in np.argwhere(~finite)[0])
        raise NonFiniteVoxelsError(
            path, f"the {role} image holds {bad} NaN/infinite voxel(s) (first at z,y,x={first}); "
            "re-export the image or replace those voxels before inference", value=bad)


def _read_umask() -> int:
    mask = os.umask(0)  # the only way to read it; done once, at import, before any writer thread
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def write_image_atomic(image: sitk.Image, path: Path, compress: bool = True) -> Path:
    """Write ``image`` to ``path`` so that readers never see a partial file.

    The image goes to a temporary file in the same folder (same suffix, so SimpleITK picks
    the same writer) that is renamed over ``path`` only once complete.
    """
    path = Path(path)
    split = split_image_name(path.name)
    if split is None:
        raise OutputError(f"{path}: unsupported image suffix; use one of {', '.join(IMAGE_SUFFIXES)}")
    if split[1].lower() in (".mhd", ".nhdr"):
        raise OutputError(f"{path}: header+data formats cannot be written atomically; use .mha or .nrrd")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{split[0]}.", suffix=f".partial{split[1]}", dir=path.parent)
    os.close(fd)
    try:
        sitk.WriteImage(image, tmp_name, compress)
        os.chmod(tmp_name, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; outputs get the usual mode
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path
