"""Reading, validating and atomically writing single 3D images through SimpleITK."""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import (
    BadSpacingError,
    ImageTooLargeError,
    NonFiniteVoxelsError,
    NotAVolumeError,
    OutputError,
    UnreadableImageError,
)
from ..files import publishing
from ..geometry import Geometry
from .headers import Declared, HeaderError, declared
from .nifti import NIFTI_READ_ERRORS, holds_all_bytes, scan_nifti

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


def read_image(path: Path, role: str, max_voxels: int | None = None) -> sitk.Image:
    """Read one 3D single-channel image and check its header.

    The raw header is read first (``check_header``), so that nothing is allocated for a file
    that lies about its size and no spacing is repaired behind the user's back.

    Args:
        path: the image file.
        role: what the image is for ("PET", "CT", "SEG"), named in error messages.
        max_voxels: refuse images declaring more voxels than this (None: no limit).

    Raises:
        UnreadableImageError: SimpleITK cannot read the file, or the file is truncated.
        ImageTooLargeError: the header declares more than ``max_voxels`` voxels.
        NotAVolumeError: the image is not 3D or has several channels.
        NonFiniteVoxelsError: a NIfTI file holds NaN/inf voxels (ITK would read them as 0;
            other formats are checked on the array by ``check_finite``).
        BadSpacingError: a spacing is zero, negative or not finite.
    """
    path = Path(path)
    check_header(path, role, max_voxels)
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


def check_header(path: Path, role: str, max_voxels: int | None = None) -> Declared | None:
    """Check what the raw header of ``path`` declares, before any voxel is read.

    Returns:
        What the header declares (None for a format without a raw check).

    Raises:
        UnreadableImageError: the header is invalid, or the file holds less data than it declares.
        BadSpacingError: a declared spacing is zero, negative, NaN or infinite (ITK would read
            0 and NaN as 1.0 mm and a negative spacing as a flipped axis).
        ImageTooLargeError: more voxels than ``max_voxels``.
    """
    try:
        head = declared(path)
    except (HeaderError, *NIFTI_READ_ERRORS) as exc:
        raise UnreadableImageError(
            path, f"the {role} image header cannot be read ({exc}); check that the file is complete and "
            "in the format its name says") from exc
    if head is None:
        return None
    spacing = head.spacing[:min(3, len(head.shape))]
    if not all(np.isfinite(s) and s > 0 for s in spacing):
        raise BadSpacingError(
            path, f"the {role} image header declares voxel spacing {spacing} mm: every spacing must be a "
            "positive number (ITK would read 0 or NaN as 1.0 mm and a negative value as a flipped axis); "
            "write the true spacing into the header (pixdim[1..3] in NIfTI, ElementSpacing in MHA, "
            "spacings or space directions in NRRD)", value=spacing)
    if max_voxels is not None and head.voxels > max_voxels:
        raise ImageTooLargeError(
            path, f"the {role} image header declares {' x '.join(map(str, head.shape))} = {head.voxels:,} "
            f"voxels, more than the limit of {max_voxels:,} (--max-voxels); if the size is real and this "
            "machine has the memory, raise --max-voxels, else the header is wrong", value=head.voxels)
    short = head.shortfall()
    if short is not None:
        raise UnreadableImageError(
            path, f"the {role} image is truncated: its header declares {' x '.join(map(str, head.shape))} "
            f"voxels, which need {short[1]:,} data bytes{' (compressed, at least)' if head.compression else ''} "
            f"in {head.data_file.name}, and it holds {short[0]:,}; copy or export it again", value=short[0])
    return head


# What ITK says when a file's data end early (MetaImage, NRRD raw and gzip).
_TRUNCATED_WORDS = ("not read completely", "fread got only", "but received", "unexpected end")


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
        if any(word in str(exc).lower() for word in _TRUNCATED_WORDS):
            raise UnreadableImageError(
                path, f"the {role} image is truncated (its data end before the size its header declares: "
                f"{first_line}); copy or export it again") from exc
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
    with publishing(path, stem=split[0], suffix=split[1]) as tmp:
        try:
            sitk.WriteImage(image, str(tmp), compress)
        except RuntimeError as exc:
            raise OutputError(f"{path}: cannot write the image ({str(exc).strip().splitlines()[-1]}); "
                              "check free space and permissions of the output folder") from exc
        verify_written(tmp, image, path)
    return path


def verify_written(tmp: Path, image: sitk.Image, final: Path) -> None:
    """Raise OutputError unless ``tmp`` holds all of ``image``'s voxels on its grid.

    SimpleITK does not raise on a short write (a full disk): NIfTI prints a warning, MetaImage
    nothing. So the file's header is read back and its data length checked (for gzip NIfTI the
    size field of the gzip trailer) before it may be renamed into place.
    """
    def fail(why: str):
        raise OutputError(f"{final}: the written file is incomplete or wrong ({why}); is the output disk "
                          "full? Free space and run again (nothing was published)")

    try:
        head = declared(tmp)
        if head is not None and (tuple(head.shape[:3]) != tuple(image.GetSize()) or head.shortfall()):
            fail(f"header size {head.shape}, data {head.shortfall() or 'complete'}")
        if head is not None and head.compressed_bytes is not None \
                and head.data_file.stat().st_size - head.data_offset != head.compressed_bytes:
            fail(f"{head.data_file.stat().st_size - head.data_offset} of {head.compressed_bytes} compressed bytes")
        if tmp.name.lower().endswith((".nii", ".nii.gz")) and not holds_all_bytes(tmp):
            fail("NIfTI data end early")
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(tmp))
        reader.ReadImageInformation()
    except (HeaderError, RuntimeError, *NIFTI_READ_ERRORS) as exc:
        fail(f"cannot read it back: {str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__}")
    written = Geometry(tuple(reader.GetSize()), tuple(reader.GetSpacing()), tuple(reader.GetOrigin()),
                       tuple(reader.GetDirection()))
    if not geometry_of(image).same_grid(written) or reader.GetPixelID() != image.GetPixelID():
        fail(f"read back as {written} {reader.GetPixelIDTypeAsString()}")
