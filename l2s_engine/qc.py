"""Quality-control pictures: coronal views of a study in radiological orientation, as PNG.

Only numpy and zlib: the runtime needs no imaging library to write a QC picture.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

from .files import write_bytes_atomic
from .geometry import Geometry

LESION_RGB = (220, 20, 20)
CUE_RGB = (20, 110, 255)  # the outline of the 2D net's cue (cue > threshold)
QC_MIN_WIDTH = 400  # pixels: what a reader can review


def coronal_view(volume: np.ndarray, geometry: Geometry, reduce: str = "max") -> np.ndarray:
    """A coronal image of ``volume``: head up, patient's right on the viewer's left.

    Args:
        volume: (z, y, x) array on ``geometry``.
        geometry: its grid; the anterior-posterior and head-foot axes are read from it.
        reduce: "max" (maximum-intensity projection) or "mid" (the middle coronal slice).

    Returns:
        2D float array (rows head to foot) with square pixels (rows resampled to the
        lateral spacing).
    """
    ap, si = geometry.anterior_posterior_axis(), geometry.superior_inferior_axis()
    lateral = 3 - ap - si
    if reduce == "max":
        image = volume.max(axis=ap)
    elif reduce == "mid":
        image = np.take(volume, volume.shape[ap] // 2, axis=ap)
    else:
        raise ValueError(f"reduce must be 'max' or 'mid', got {reduce!r}")
    rows_axis, cols_axis = (si, lateral)
    image = image if rows_axis < cols_axis else image.T  # rows = head-foot axis
    direction = geometry.direction_matrix()
    if direction[2, 2 - si] > 0:      # index grows towards the head: flip so the head is on top
        image = image[::-1]
    if direction[0, 2 - lateral] < 0:  # index grows towards the patient's right: flip
        image = image[:, ::-1]
    spacing = geometry.spacing
    row_mm, col_mm = spacing[2 - si], spacing[2 - lateral]
    rows = max(1, int(round(image.shape[0] * row_mm / col_mm)))
    pick = np.minimum((np.arange(rows) + 0.5) * image.shape[0] / rows, image.shape[0] - 1).astype(int)
    return np.ascontiguousarray(image[pick])


def to_gray(image: np.ndarray, low: float, high: float, invert: bool = False) -> np.ndarray:
    """Window ``image`` to uint8 grey levels (inverted: high values dark, as PET is read)."""
    scaled = np.clip((image.astype(np.float64) - low) / (high - low), 0.0, 1.0)
    if invert:
        scaled = 1.0 - scaled
    return np.rint(scaled * 255).astype(np.uint8)


def overlay(gray: np.ndarray, mask: np.ndarray, rgb: tuple[int, int, int] = LESION_RGB,
            alpha: float = 0.7) -> np.ndarray:
    """An RGB picture of ``gray`` with ``mask`` (same 2D shape) blended in colour."""
    out = np.repeat(gray[..., None], 3, axis=2).astype(np.float64)
    on = mask.astype(bool)
    out[on] = (1 - alpha) * out[on] + alpha * np.asarray(rgb, dtype=np.float64)
    return np.rint(out).astype(np.uint8)


def enlarge(image: np.ndarray, min_width: int = QC_MIN_WIDTH) -> np.ndarray:
    """``image`` with each pixel repeated k x k times, the smallest k that makes it ``min_width`` wide.

    A coronal view of a 4 mm study is about 100 pixels wide: too small to review. Whole
    pixels keep the voxels' edges visible (no interpolation invents detail).
    """
    k = max(1, -(-min_width // max(1, image.shape[1])))
    return np.repeat(np.repeat(image, k, axis=0), k, axis=1) if k > 1 else image


def outline(mask: np.ndarray) -> np.ndarray:
    """The pixels of a 2D ``mask`` with a 4-neighbour outside it (the picture's edge is outside)."""
    on = np.pad(mask.astype(bool), 1)
    inner = on[:-2, 1:-1] & on[2:, 1:-1] & on[1:-1, :-2] & on[1:-1, 2:]
    return on[1:-1, 1:-1] & ~inner


def qc_picture(pet_mip: np.ndarray, mask_mip: np.ndarray, cue_mip: np.ndarray | None = None) -> np.ndarray:
    """The QC picture of one study: the PET MIP (SUV 0-10, inverted), enlarged for review,
    the mask's MIP blended in red and, where given, the outline of the cue's MIP in blue.

    A red lesion inside a blue outline is one the 2D net found; a blue outline without red
    is a place the cue marked and the 3D net did not confirm.
    """
    picture = enlarge(overlay(to_gray(pet_mip, 0.0, 10.0, invert=True), mask_mip))
    if cue_mip is not None:
        picture[outline(enlarge(cue_mip.astype(np.uint8)) > 0)] = CUE_RGB
    return picture


def write_png(path: Path, image: np.ndarray) -> Path:
    """Write a uint8 grey (H, W) or RGB (H, W, 3) image as PNG, atomically."""
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise ValueError(f"expected uint8 (H, W) or (H, W, 3), got {image.dtype} {image.shape}")
    height, width = image.shape[:2]
    color_type = 0 if image.ndim == 2 else 2
    rows = np.ascontiguousarray(image).reshape(height, -1)
    raw = b"".join(b"\x00" + rows[r].tobytes() for r in range(height))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    return write_bytes_atomic(Path(path), png)
