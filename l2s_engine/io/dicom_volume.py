"""A DICOM series of single-frame slices as one float32 volume on its grid, checked.

The slices are sorted by their position along the slice normal (never by file name or
InstanceNumber); a series with mixed orientations or sizes, duplicate or missing slices,
uneven slice steps or a gantry tilt is refused, because each would put the mask somewhere
else than the lesion. Pixel values are rescaled per slice (RescaleSlope/Intercept differ per
PET slice) in float64 and kept as float32.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import (BadSpacingError, GeometryMismatchError, ImageTooLargeError, NotAVolumeError,
                      UnreadableImageError)
from ..geometry import Geometry
from .dicom_files import DicomSeries, pydicom_module

# Slice steps may differ by rounding in the written positions, not by a missing slice.
STEP_TOLERANCE = 0.01  # relative to the median step
ORIENTATION_TOLERANCE = 1e-4
# A position off the line through the first slice along the normal by more than this (mm) is a tilt.
TILT_TOLERANCE_MM = 0.05


@dataclass
class SeriesVolume:
    """A series read: values (z, y, x) after rescale, its grid, and its headers in slice order."""

    values: np.ndarray
    geometry: Geometry
    headers: list          # pydicom datasets, in z order, without their pixel data
    files: list[Path]      # in z order


def read_series(series: DicomSeries, role: str, max_voxels: int | None = None) -> SeriesVolume:
    """Read every slice of ``series`` into one volume (slice order along the normal).

    Each file is read once, in one thread (pydicom's parsing holds the GIL: threads made it
    slower); uncompressed pixel data are taken as they lie in the file.

    Raises:
        UnreadableImageError: a file cannot be read, or its pixel data are short.
        NotAVolumeError: multi-frame images, colour images, or one slice only.
        GeometryMismatchError: mixed orientation or size, duplicate or missing slices, tilt.
        BadSpacingError: a pixel spacing or slice step that is not a positive number.
        ImageTooLargeError: more voxels than ``max_voxels``.
    """
    datasets = [_dataset(p, role) for p in series.files]
    order, geometry = _geometry(datasets, series, role)
    datasets = [datasets[i] for i in order]
    if max_voxels is not None and int(np.prod(geometry.size)) > max_voxels:
        raise ImageTooLargeError(
            series.files[0], f"the {role} series is {' x '.join(map(str, geometry.size))} = "
            f"{int(np.prod(geometry.size)):,} voxels, more than the limit of {max_voxels:,} (--max-voxels)",
            value=int(np.prod(geometry.size)))
    values = np.empty(geometry.shape, np.float32)
    for z, ds in enumerate(datasets):
        values[z] = _pixels(ds, role, geometry.shape[1:])
        del ds.PixelData  # the headers are kept (SEG, SUV), not the pixels
    return SeriesVolume(values, geometry, datasets, [Path(ds.filename) for ds in datasets])


def _dataset(path: Path, role: str):
    pydicom = pydicom_module()
    try:
        ds = pydicom.dcmread(path)
    except Exception as exc:  # pydicom raises many types for a damaged file
        raise UnreadableImageError(path, f"cannot read this {role} DICOM file ({type(exc).__name__}: {exc}); "
                                         "copy or export it again") from exc
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames != 1 or int(ds.get("SamplesPerPixel", 1) or 1) != 1:
        raise NotAVolumeError(
            path, f"the {role} file is a {frames}-frame, {ds.get('SamplesPerPixel')}-sample image; l2s-infer reads "
            "series of single-frame greyscale slices: export the series as classic (not enhanced) images",
            value=frames)
    for tag in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "Rows", "Columns", "PixelData"):
        if ds.get(tag) in (None, ""):
            raise UnreadableImageError(path, f"the {role} DICOM file has no {tag}, so its place in the body or its "
                                             "values are unknown; export the series again", value=None)
    ds.filename = str(path)
    return ds


def _geometry(headers: list, series: DicomSeries, role: str) -> tuple[np.ndarray, Geometry]:
    """(slice order, grid) of a series' headers, or the reason it is not one regular volume."""
    first = headers[0]
    if len(headers) < 2:
        raise NotAVolumeError(first.filename, f"the {role} series {series.label()} has one slice; a volume is needed",
                              value=1)
    iop = np.asarray(first.ImageOrientationPatient, dtype=np.float64)
    spacing = np.asarray(first.PixelSpacing, dtype=np.float64)
    for ds in headers[1:]:
        same = (np.allclose(np.asarray(ds.ImageOrientationPatient, float), iop, atol=ORIENTATION_TOLERANCE)
                and np.allclose(np.asarray(ds.PixelSpacing, float), spacing, rtol=0, atol=1e-4)
                and (ds.Rows, ds.Columns) == (first.Rows, first.Columns))
        if not same:
            raise GeometryMismatchError(
                ds.filename, f"this {role} slice differs from {Path(first.filename).name} of the same series "
                f"(orientation {list(ds.ImageOrientationPatient)} vs {list(first.ImageOrientationPatient)}, pixel "
                f"spacing {list(ds.PixelSpacing)} vs {list(first.PixelSpacing)}, size {ds.Rows}x{ds.Columns} vs "
                f"{first.Rows}x{first.Columns}); the series is not one volume: export it again", value=None)
    row, col = iop[:3], iop[3:]
    if abs(np.linalg.norm(row) - 1) > 1e-3 or abs(np.linalg.norm(col) - 1) > 1e-3 or abs(row @ col) > 1e-3:
        raise GeometryMismatchError(first.filename, f"ImageOrientationPatient {list(iop)} is not two orthogonal unit "
                                                    "vectors; the header is damaged", value=list(iop))
    if not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise BadSpacingError(first.filename, f"PixelSpacing {list(spacing)} is not two positive numbers (mm)",
                              value=list(spacing))
    normal = np.cross(row, col)
    positions = np.array([np.asarray(ds.ImagePositionPatient, dtype=np.float64) for ds in headers])
    along = positions @ normal
    order = np.argsort(along, kind="stable")
    along, positions = along[order], positions[order]
    steps = np.diff(along)
    step = float(np.median(steps))
    names = [Path(headers[i].filename).name for i in order]
    if np.any(steps <= STEP_TOLERANCE * max(step, 1e-6)):
        k = int(np.argmin(steps))
        raise GeometryMismatchError(
            headers[order[k + 1]].filename, f"two {role} slices lie at the same position {along[k]:.3f} mm along "
            f"the slice normal ({names[k]}, {names[k + 1]}); the folder holds a slice twice or two series with "
            "one SeriesInstanceUID: keep one copy of the series", value=float(along[k]))
    uneven = np.abs(steps - step) > STEP_TOLERANCE * step
    if np.any(uneven):
        k = int(np.argmax(uneven))
        raise GeometryMismatchError(
            headers[order[k + 1]].filename, f"the {role} slices are {step:.3f} mm apart except between "
            f"{along[k]:.3f} and {along[k + 1]:.3f} mm ({steps[k]:.3f} mm, {names[k]} -> {names[k + 1]}): slices are "
            "missing or the spacing varies; send the whole series again (a volume with a gap would be misplaced)",
            value=float(steps[k]))
    off_axis = positions - positions[0] - np.outer(along - along[0], normal)
    if np.abs(off_axis).max() > TILT_TOLERANCE_MM:
        raise GeometryMismatchError(
            first.filename, f"the {role} slice positions drift {np.abs(off_axis).max():.2f} mm sideways from the "
            "slice normal (gantry tilt or sheared series), which a regular grid cannot hold; resample it to an "
            "untilted series first", value=float(np.abs(off_axis).max()))
    expected = first.get("NumberOfSlices")
    if role == "PET" and expected not in (None, "") and int(expected) != len(headers):
        raise GeometryMismatchError(
            first.filename, f"the PET series declares NumberOfSlices {int(expected)} and holds {len(headers)} files; "
            "slices are missing (or extra files were added): send the whole series again", value=len(headers))
    direction = np.column_stack([row, col, normal])
    geometry = Geometry(size=(int(first.Columns), int(first.Rows), len(headers)),
                        spacing=(float(spacing[1]), float(spacing[0]), step),
                        origin=tuple(float(v) for v in positions[0]),
                        direction=tuple(float(v) for v in direction.reshape(-1)))
    return order, geometry


_NATIVE = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"}  # implicit / explicit VR little endian


def _pixels(ds, role: str, shape: tuple[int, int]) -> np.ndarray:
    """One slice's values after its own rescale, float32."""
    try:
        stored = _stored(ds)
    except Exception as exc:  # pydicom's decoders raise many types
        raise UnreadableImageError(ds.filename, f"the {role} slice's pixel data cannot be read ({type(exc).__name__}: "
                                                f"{exc}); the file is damaged or truncated: copy or export it again") from exc
    if stored.shape != shape:
        raise UnreadableImageError(ds.filename, f"the {role} slice holds {stored.shape} pixels, its header says "
                                                f"{shape}", value=stored.shape)
    slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
    intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
    if not (np.isfinite(slope) and np.isfinite(intercept)):
        raise UnreadableImageError(ds.filename, f"the {role} slice's RescaleSlope/Intercept {slope}/{intercept} are "
                                                "not numbers", value=(slope, intercept))
    return (stored.astype(np.float64) * slope + intercept).astype(np.float32)


def _stored(ds) -> np.ndarray:
    """The stored values of one slice: read in place when uncompressed 16-bit, else pydicom's decoders."""
    syntax = str(ds.file_meta.get("TransferSyntaxUID", ""))
    if syntax in _NATIVE and ds.BitsAllocated == 16 and ds.BitsStored == 16:
        rows, columns = int(ds.Rows), int(ds.Columns)
        data = ds.PixelData
        if len(data) < 2 * rows * columns:
            raise ValueError(f"{len(data)} bytes of pixel data, {2 * rows * columns} needed for {rows} x {columns}")
        dtype = "<i2" if int(ds.PixelRepresentation) == 1 else "<u2"
        return np.frombuffer(data, dtype, rows * columns).reshape(rows, columns)
    return ds.pixel_array
