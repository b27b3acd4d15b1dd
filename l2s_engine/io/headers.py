"""What an image file declares, read from its raw header before ITK allocates anything.

ITK reads a header that lies without complaint: a NIfTI ``pixdim`` of 0 or NaN becomes 1.0 mm,
a negative one a flipped axis, and a 352-byte file may declare 1100^3 voxels (ITK allocates
them before it finds the data missing). So every input's header is read here first, and the
declared size is checked against the file's size and a voxel budget.

Formats: NIfTI-1/2 (``.nii``, ``.nii.gz``), MetaImage (``.mha``, ``.mhd``), NRRD (``.nrrd``,
``.nhdr``). Attached and detached data files are both followed.
"""

from __future__ import annotations

import gzip
import re
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Deflate cannot compress better than about 1032:1; a file that would need more holds less
# than its header declares.
MAX_DEFLATE_RATIO = 1032
_META_TYPES = {"MET_CHAR": 1, "MET_UCHAR": 1, "MET_SHORT": 2, "MET_USHORT": 2, "MET_INT": 4, "MET_UINT": 4,
               "MET_LONG": 4, "MET_ULONG": 4, "MET_LONG_LONG": 8, "MET_ULONG_LONG": 8, "MET_FLOAT": 4,
               "MET_DOUBLE": 8}
_NRRD_TYPES = {1: ("signed char", "int8", "int8_t", "uchar", "unsigned char", "uint8", "uint8_t", "char"),
               2: ("short", "short int", "signed short", "signed short int", "int16", "int16_t", "ushort",
                   "unsigned short", "unsigned short int", "uint16", "uint16_t"),
               4: ("int", "signed int", "int32", "int32_t", "uint", "unsigned int", "uint32", "uint32_t", "float"),
               8: ("longlong", "long long", "long long int", "signed long long", "signed long long int", "int64",
                   "int64_t", "ulonglong", "unsigned long long", "unsigned long long int", "uint64", "uint64_t",
                   "double")}
_NRRD_SIZE = {name: size for size, names in _NRRD_TYPES.items() for name in names}


class HeaderError(ValueError):
    """The header cannot be parsed (not this format, or a required field is missing)."""


@dataclass(frozen=True)
class Declared:
    """What a header declares, and how much data the file can hold.

    Attributes:
        shape: every dimension, fastest first (x, y, z[, ...]).
        spacing: the spacings as the header states them (x, y, z), before any reader's repair.
        data_bytes: bytes the declared voxels take.
        data_file: the file holding the voxels (the image itself, or a detached one).
        data_offset: where the (possibly compressed) data start in ``data_file``.
        compression: None, "gzip" (NIfTI .gz, NRRD), or "zlib" (MetaImage).
        compressed_bytes: the compressed data size the header states (MetaImage), or None.
    """

    shape: tuple[int, ...]
    spacing: tuple[float, ...]
    data_bytes: int
    data_file: Path
    data_offset: int
    compression: str | None = None
    compressed_bytes: int | None = None

    @property
    def voxels(self) -> int:
        return int(np.prod(self.shape, dtype=object))

    def shortfall(self) -> tuple[int, int] | None:
        """(bytes present at most, bytes needed) when the data file cannot hold the data, else None.

        Uncompressed data must fill the file; compressed data must be present in full where the
        header states its size, and can never be smaller than 1/1032 of the voxels.
        """
        try:
            present = self.data_file.stat().st_size - self.data_offset
        except OSError:
            present = 0
        if self.compression is None:
            need = self.data_bytes
        elif self.compressed_bytes is not None:
            need = self.compressed_bytes
        else:
            need = -(-self.data_bytes // MAX_DEFLATE_RATIO)
        if present < need:
            return max(present, 0), need
        return None


def declared(path: Path) -> Declared | None:
    """The header of ``path``, or None for a format not read here.

    Raises:
        HeaderError: the header is not valid for the format its name says.
        OSError: the file cannot be read.
    """
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        return _nifti(path, name.endswith(".gz"))
    if name.endswith((".mha", ".mhd")):
        return _meta(path)
    if name.endswith((".nrrd", ".nhdr")):
        return _nrrd(path)
    return None


def _nifti(path: Path, gz: bool) -> Declared:
    with (gzip.open if gz else open)(path, "rb") as f:
        try:
            raw = f.read(540)
        except (EOFError, OSError) as exc:
            raise HeaderError(f"the NIfTI header cannot be read ({exc})") from exc
    if len(raw) < 348:
        raise HeaderError(f"{len(raw)} header bytes, a NIfTI header has at least 348")
    for order in ("<", ">"):
        size = struct.unpack(order + "i", raw[:4])[0]
        if size == 348:
            dims = struct.unpack(order + "8h", raw[40:56])
            bitpix = struct.unpack(order + "h", raw[72:74])[0]
            pixdim = struct.unpack(order + "8f", raw[76:108])
            offset = int(struct.unpack(order + "f", raw[108:112])[0])
            break
        if size == 540 and len(raw) >= 540:
            bitpix = struct.unpack(order + "h", raw[14:16])[0]
            dims = struct.unpack(order + "8q", raw[16:80])
            pixdim = struct.unpack(order + "8d", raw[104:168])
            offset = struct.unpack(order + "q", raw[168:176])[0]
            break
    else:
        raise HeaderError("not a NIfTI-1/2 header (sizeof_hdr is neither 348 nor 540)")
    ndim = int(dims[0])
    if not 1 <= ndim <= 7 or any(int(d) < 1 for d in dims[1:ndim + 1]):
        raise HeaderError(f"invalid NIfTI dimensions {tuple(dims)}")
    shape = tuple(int(d) for d in dims[1:ndim + 1])
    voxels = int(np.prod(shape, dtype=object))
    # a .nii.gz is one compressed stream holding header and voxels: its data start at byte 0
    return Declared(shape, tuple(float(p) for p in pixdim[1:4]), voxels * max(int(bitpix), 1) // 8, path,
                    0 if gz else max(offset, size + 4), "gzip" if gz else None)


def _text_header(path: Path, limit: int = 1 << 16) -> bytes:
    with open(path, "rb") as f:
        return f.read(limit)


def _meta(path: Path) -> Declared:
    raw = _text_header(path)
    fields, end = {}, None
    pos = 0
    for line in raw.splitlines(keepends=True):
        pos += len(line)
        key, sep, value = line.decode("latin-1").partition("=")
        if not sep:
            raise HeaderError(f"MetaImage header line without '=': {line[:60]!r}")
        fields[key.strip()] = value.strip()
        if key.strip() == "ElementDataFile":
            end = pos
            break
    if end is None:
        raise HeaderError("no ElementDataFile line in the MetaImage header")
    try:
        shape = tuple(int(v) for v in fields["DimSize"].split())
        item = _META_TYPES[fields["ElementType"]] * int(fields.get("ElementNumberOfChannels", "1"))
        spacing = tuple(float(v) for v in fields.get("ElementSpacing", fields.get("ElementSize", "1 1 1")).split())
    except (KeyError, ValueError) as exc:
        raise HeaderError(f"MetaImage header field missing or invalid ({exc})") from exc
    if not shape or any(d < 1 for d in shape):
        raise HeaderError(f"invalid DimSize {fields['DimSize']!r}")
    compressed = fields.get("CompressedData", "False").lower() == "true"
    size = fields.get("CompressedDataSize")
    data_name = fields["ElementDataFile"]
    if data_name == "LOCAL":
        data_file, offset = path, end
    elif " " in data_name or data_name.upper().startswith("LIST"):
        raise HeaderError(f"ElementDataFile {data_name!r}: file lists are not supported; use one .mha file")
    else:
        data_file, offset = path.parent / data_name, int(fields.get("HeaderSize", "0") or 0)
    voxels = int(np.prod(shape, dtype=object))
    return Declared(shape, spacing, voxels * item, data_file, max(offset, 0), "zlib" if compressed else None,
                    int(size) if compressed and size else None)


def _nrrd(path: Path) -> Declared:
    raw = _text_header(path)
    if not raw.startswith(b"NRRD000"):
        raise HeaderError("no NRRD magic (NRRD000X) at the start of the file")
    fields, end, pos = {}, None, 0
    for line in raw.splitlines(keepends=True):
        pos += len(line)
        text = line.decode("latin-1").rstrip("\r\n")
        if text == "":
            end = pos
            break
        if text.startswith("#") or text.startswith("NRRD"):
            continue
        key, sep, value = text.partition(":")
        if sep:
            fields[key.strip().lower()] = value.lstrip("=").strip()
    try:
        shape = tuple(int(v) for v in fields["sizes"].split())
        item = _NRRD_SIZE[fields["type"].lower()]
    except (KeyError, ValueError) as exc:
        raise HeaderError(f"NRRD header field missing or invalid ({exc})") from exc
    spacing = tuple(_nrrd_spacings(fields))
    encoding = fields.get("encoding", "raw").lower()
    if encoding not in ("raw", "gzip", "gz"):
        raise HeaderError(f"NRRD encoding {encoding!r} is not checked here; use raw or gzip")
    data_name = fields.get("data file", fields.get("datafile"))
    if data_name:
        data_file, offset = path.parent / data_name, int(fields.get("byte skip", "0") or 0)
    elif end is None:
        raise HeaderError("the NRRD header has no blank line before the data")
    else:
        data_file, offset = path, end
    voxels = int(np.prod(shape, dtype=object))
    return Declared(shape, spacing, voxels * item, data_file, max(offset, 0),
                    None if encoding == "raw" else "gzip")


def _nrrd_spacings(fields: dict[str, str]) -> list[float]:
    if "spacings" in fields:
        return [float(v) for v in fields["spacings"].split() if v.lower() != "nan"]
    vectors = re.findall(r"\(([^)]*)\)", fields.get("space directions", ""))
    return [float(np.linalg.norm([float(v) for v in vector.split(",")])) for vector in vectors]
