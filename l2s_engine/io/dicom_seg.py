"""A lesion mask as a DICOM Segmentation (SEG) of the PT series it was computed on (highdicom).

The SEG is BINARY with one segment, shares the PT series' patient, study and frame of
reference, and references each source slice from the frame made of it. Slices without lesion
are omitted. An all-zero mask is written as one empty frame on the first source slice:
highdicom (0.28) would otherwise keep every empty frame (a 326-slice whole body: 6.5 MB of
zeros), and a SEG needs at least one frame; a slice without a frame is empty, as with any
lesion-free slice (highdicom's reader: ``assert_missing_frames_are_empty=True``).

Codes (DICOM part 16, DCMR): category SCT 49755003 "Morphologically Abnormal Structure"
(CID 7150), type SCT 108369006 "Neoplasm" (CID 7159, Lesion Segmentation Type): L2SNet is
trained on tumour lesions; algorithm family DCM 123110 "Artificial Intelligence" (CID 7162).

highdicom and pydicom are imported when a SEG is written, so the rest of l2s-engine runs
without them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import OutputError, UnreadableImageError
from ..files import publishing

log = logging.getLogger(__name__)

SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
INSTALL = "pip install highdicom"


def write_dicom_seg(mask: np.ndarray, source_files: Sequence[Path], path: Path, *,
                    series_number: int = 9100, protected: tuple[Path, ...] = ()) -> Path:
    """Write ``mask`` as a DICOM SEG of the PT slices ``source_files``, atomically.

    Args:
        mask: (z, y, x) array, z in the order of ``source_files`` (one single-frame image per
            z), (y, x) = (Rows, Columns); non-zero voxels are lesion.
        source_files: the PT series' files, read without their pixels; never modified.
        path: the SEG file to write (any name; replaced if it exists).
        series_number: the SEG series' SeriesNumber.
        protected: input files that must never be overwritten.

    Returns:
        ``path``.

    Raises:
        OutputError: highdicom is missing, ``path`` is an input, the sources are not one series
            on one frame of reference, the mask shape does not match them, or the write fails
            (then neither ``path`` nor a temporary file is left).
        UnreadableImageError: a source file is not a readable DICOM file.
    """
    path, sources = Path(path), [Path(p) for p in source_files]
    target = path.resolve()
    if any(target == p.resolve() for p in (*map(Path, protected), *sources)):
        raise OutputError(f"{path}: refusing to overwrite an input file; choose another output path")
    if not sources:
        raise OutputError(f"{path}: no source files given; pass the PT series' files the mask was computed on")
    try:
        import highdicom as hd
        import pydicom
        from pydicom.sr.codedict import codes
    except ImportError as exc:
        raise OutputError(f"{path}: writing a DICOM SEG needs highdicom ({exc}); {INSTALL}") from exc

    datasets = [_read_header(pydicom, p) for p in sources]
    _check_one_series(datasets, sources, path)
    shape = (len(datasets), int(datasets[0].Rows), int(datasets[0].Columns))
    mask = np.asarray(mask)
    if mask.shape != shape:
        raise OutputError(f"{path}: mask shape {tuple(mask.shape)} is not (slices, Rows, Columns) = {shape} of "
                          "the source files; pass the mask in the source files' slice order and grid")
    binary = mask != 0  # a new array: the caller's mask is never modified
    kept = [z for z in range(shape[0]) if binary[z].any()]
    segment = hd.seg.SegmentDescription(
        1, "lesion", codes.SCT.MorphologicallyAbnormalStructure, codes.SCT.Neoplasm, "AUTOMATIC",
        hd.AlgorithmIdentificationSequence("l2s-engine L2SNet", codes.DCM.ArtificialIntelligence, __version__))
    try:
        extra = {}
        if not kept:  # one empty frame on the first slice (module docstring)
            log.info("%s: the mask is empty; the SEG holds one empty frame", path)
            kept, binary = [0], binary[:1]
            extra = {"omit_empty_frames": False, "plane_positions": [
                hd.PlanePositionSequence("PATIENT", datasets[0].ImagePositionPatient)]}
        seg = hd.seg.Segmentation(
            datasets, binary, "BINARY", [segment], hd.UID(), series_number, hd.UID(), 1, "l2s-engine", "L2SNet",
            __version__, "none", series_description="L2SNet lesion segmentation", **extra)
    except (ValueError, TypeError, AttributeError) as exc:
        raise OutputError(f"{path}: highdicom cannot make a SEG of these source files ({exc}); check that they "
                          "are one PT series of parallel, equally sized slices") from exc
    expected = {datasets[z].SOPInstanceUID: binary[z] for z in kept}
    _save_atomic(pydicom, seg, path, expected)
    return path


def _read_header(pydicom, file: Path):
    try:
        return pydicom.dcmread(file, stop_before_pixels=True)
    except (OSError, pydicom.errors.InvalidDicomError) as exc:
        raise UnreadableImageError(file, f"not a readable DICOM file ({exc}); pass the PT series' files") from exc


def _check_one_series(datasets, sources: list[Path], path: Path) -> None:
    first = datasets[0]
    for key in ("SeriesInstanceUID", "FrameOfReferenceUID"):
        for ds, file in zip(datasets, sources):
            if ds.get(key) != first.get(key):
                raise OutputError(f"{path}: source {file} has {key} {ds.get(key)}, not {first.get(key)} of "
                                  f"{sources[0]}; pass the files of one PT series only")


def _save_atomic(pydicom, seg, path: Path, expected: dict) -> None:
    """Save ``seg`` to a temporary file, check it read back, then rename it onto ``path``."""
    with publishing(path) as tmp:
        try:
            seg.save_as(tmp, enforce_file_format=True)
        except OSError as exc:
            raise OutputError(f"{path}: cannot write the SEG ({exc.strerror or exc}); free space or fix the "
                              "permissions of the output folder and run again") from exc
        _verify(pydicom, tmp, path, expected)


def _verify(pydicom, tmp: Path, final: Path, expected: dict) -> None:
    """Raise OutputError unless ``tmp`` is a SEG whose frames are ``expected`` (source UID -> slice)."""
    try:
        ds = pydicom.dcmread(tmp)
        frames = ds.pixel_array.reshape(int(ds.NumberOfFrames), ds.Rows, ds.Columns)
        refs = [item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
                for item in ds.PerFrameFunctionalGroupsSequence]
        ok = (ds.SOPClassUID == SEG_SOP_CLASS and len(frames) == len(refs) and sorted(refs) == sorted(expected)
              and all(np.array_equal(f, expected[r]) for f, r in zip(frames, refs)))
        why = "" if ok else f"{len(refs)} frames referencing other slices or holding other pixels"
    except Exception as exc:  # noqa: BLE001  (any failure to parse it means a bad file)
        why = f"cannot read it back: {exc}"
    if why:
        raise OutputError(f"{final}: the written SEG is incomplete or wrong ({why}); is the output disk full? "
                          "Free space and run again (nothing was published)")
