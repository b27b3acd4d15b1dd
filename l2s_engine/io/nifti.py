"""A raw pass over NIfTI voxel data, for what ITK's NIfTI reader hides.

ITK reads a truncated ``.nii.gz`` without complaint (the missing voxels become 0) and turns
NaN and infinite voxels into 0. Both would silently change a study, so NIfTI files get one
streamed pass (constant memory) that checks the data are complete and finite.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_FLOAT_TYPES = {16: "f4", 64: "f8"}  # NIfTI datatype codes of float32 / float64
_CHUNK = 1 << 22

# What a damaged file raises while it is streamed.
NIFTI_READ_ERRORS = (OSError, EOFError, zlib.error, ValueError, struct.error)


@dataclass(frozen=True)
class NiftiScan:
    """What the raw pass found: how many data bytes there were, and non-finite voxels."""

    expected_bytes: int
    data_bytes: int
    non_finite: int
    first_non_finite: int | None  # flat index in file order (x fastest), i.e. numpy (z, y, x) order
    shape_zyx: tuple[int, ...]

    @property
    def complete(self) -> bool:
        return self.data_bytes >= self.expected_bytes


@dataclass(frozen=True)
class _Header:
    order: str
    datatype: int
    bitpix: int
    vox_offset: int
    shape_xyz: tuple[int, ...]


def _parse_header(raw: bytes) -> _Header:
    """The fields of a NIfTI-1 (348-byte) or NIfTI-2 (540-byte) header we need."""
    for order in ("<", ">"):
        size = struct.unpack(order + "i", raw[:4])[0]
        if size == 348:
            dims = struct.unpack(order + "8h", raw[40:56])
            datatype, bitpix = struct.unpack(order + "2h", raw[70:74])
            offset = int(struct.unpack(order + "f", raw[108:112])[0])
            break
        if size == 540:
            datatype, bitpix = struct.unpack(order + "2h", raw[12:16])
            dims = struct.unpack(order + "8q", raw[16:80])
            offset = struct.unpack(order + "q", raw[168:176])[0]
            break
    else:
        raise ValueError("not a NIfTI-1/2 header")
    ndim = max(1, min(int(dims[0]), 7))
    shape = tuple(max(int(d), 1) for d in dims[1:ndim + 1])
    return _Header(order, datatype, bitpix, max(offset, size + 4), shape)


def _stored_size(path: Path, gz: bool) -> int:
    """Bytes the file holds once decompressed, as its gzip trailer says (mod 2**32)."""
    if not gz:
        return path.stat().st_size
    with open(path, "rb") as f:
        f.seek(-4, 2)
        return struct.unpack("<I", f.read(4))[0]


def holds_all_bytes(path: Path) -> bool:
    """Whether a NIfTI file's size (or its gzip trailer's size field) is exactly header + voxels.

    Enough to catch a short write of a file just written by one writer in one gzip member (a
    truncated gzip file ends in compressed data, which matches the size field with
    probability 2**-32); an input file needs ``scan_nifti``.
    """
    gz = path.name.lower().endswith(".gz")
    with (gzip.open if gz else open)(path, "rb") as f:
        header = _parse_header(f.read(540))
    expected = header.vox_offset + int(np.prod(header.shape_xyz)) * header.bitpix // 8
    return _stored_size(path, gz) == expected % (1 << (32 if gz else 64))


def scan_nifti(path: Path) -> NiftiScan:
    """Check that a .nii/.nii.gz file holds all its voxels, and count non-finite ones.

    Float data are streamed once (constant memory). Integer data cannot be non-finite: when
    the file size (or the gzip trailer's size field) is exactly header + voxels, the data are
    complete and nothing is decompressed; otherwise (truncation, multi-member gzip, trailing
    bytes) the data are streamed to count what is there.

    Raises:
        one of NIFTI_READ_ERRORS: not NIfTI, or the file cannot be decompressed to its end.
    """
    path = Path(path)
    gz = path.name.lower().endswith(".gz")
    opener = gzip.open if gz else open
    with opener(path, "rb") as f:
        header = _parse_header(f.read(540))
        voxels = int(np.prod(header.shape_xyz))
        expected = voxels * header.bitpix // 8
        dtype = np.dtype(header.order + _FLOAT_TYPES[header.datatype]) if header.datatype in _FLOAT_TYPES else None
        if dtype is None and _stored_size(path, gz) == (header.vox_offset + expected) % (1 << (32 if gz else 64)):
            return NiftiScan(expected, expected, 0, None, tuple(reversed(header.shape_xyz)))
        f.seek(header.vox_offset)
        total, seen, bad, first, carry = 0, 0, 0, None, b""
        while True:
            chunk = f.read(_CHUNK)
            if not chunk:
                break
            total += len(chunk)
            if dtype is None:
                continue
            data = carry + chunk
            usable = len(data) - len(data) % dtype.itemsize
            finite = np.isfinite(np.frombuffer(data[:usable], dtype)[: max(voxels - seen, 0)])
            if not finite.all():
                if first is None:
                    first = seen + int(np.argmin(finite))
                bad += int(finite.size - np.count_nonzero(finite))
            seen += finite.size
            carry = data[usable:]
    return NiftiScan(expected, total, bad, first, tuple(reversed(header.shape_xyz)))
