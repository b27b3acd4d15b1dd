"""Finding studies below input paths, in the layouts autoPET data comes in.

Layouts (image files in any format SimpleITK reads, see ``IMAGE_SUFFIXES``):

- ``autopet``: a folder holding ``SUV.*`` and ``CTres.*`` (``CT.*`` is taken, and later
  resampled, when ``CTres`` is absent), optional ``SEG.*``; the TCIA conversion nests it as
  ``PETCT_<patient>/<study>/``.
- ``grand-challenge``: a folder holding ``images/pet/<name>.mha`` and ``images/ct/<name>.mha``.
- ``nnunet``: files ``<case>_<channel>.*`` in one folder (``imagesTr``/``imagesTs``), PET and
  CT channels configurable; ``labelsXx/<case>.*`` beside ``imagesXx`` is the label.
- ``dicom``: DICOM files (by their ``DICM`` marker, any name) anywhere below an input, grouped
  into studies by their headers (``dicom_files``, ``dicom_select``).

Discovery looks at names, and at DICOM headers (without pixel data). A study with a missing or ambiguous file is still returned,
with the fault in ``problem``, so that loading reports it and a many-study run goes on.
Hidden folders (``.name``, e.g. a NAS's ``.snapshot`` copies) are not searched unless given as
an input themselves; each one passed over is logged and counted, never dropped silently.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import AmbiguousStudyError, L2SError, MissingImageError, StudyError
from .dicom_files import DicomReadError, DicomSeries, common_folder, group_series, is_dicom, read_headers
from .dicom_select import SeriesChoice, pick_studies
from .images import split_image_name

AUTOPET_NAMES = ("SUV", "CTres", "CT", "SEG", "PET")
_NNUNET_FILE = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")

log = logging.getLogger(__name__)


class InputPathError(L2SError):
    """An input path given by the user does not exist or holds no study."""


@dataclass(frozen=True)
class StudyRef:
    """Where one study's files are. Paths are None where the layout expected a file."""

    case_id: str
    layout: str
    folder: Path
    pet: Path | None
    ct: Path | None
    seg: Path | None = None
    problem: StudyError | None = None
    pet_series: DicomSeries | None = None   # DICOM studies: the chosen series (``pet``/``ct``: a file of each)
    ct_series: DicomSeries | None = None
    notes: tuple[str, ...] = ()             # what discovery noticed and worked around

    @property
    def is_dicom(self) -> bool:
        """Whether the study was read from DICOM series."""
        return self.pet_series is not None


def sanitize_case_id(raw: str) -> str:
    """A case id safe to use as a file name inside an output folder.

    Anything but letters, digits, '.', '_' and '-' becomes '_'; leading dots and
    separators are removed, so the id can never name a parent folder or a hidden file.
    """
    cleaned = _UNSAFE.sub("_", raw).strip("._-")[:128]
    return cleaned if cleaned and cleaned not in (".", "..") else "case"


def find_studies(paths: list[Path | str], pet_channel: str = "0000",
                 ct_channel: str = "0001", hidden: list[Path] | None = None,
                 series: SeriesChoice = SeriesChoice()) -> list[StudyRef]:
    """Every study found below ``paths``, in a stable order, with unique safe case ids.

    Two studies whose ids clash (``siteA/study`` and ``siteB/study``) get ``study`` and
    ``study-2``, with a warning naming both folders.

    Args:
        paths: folders to search (recursively), or nnU-Net channel files.
        pet_channel: nnU-Net channel suffix of the PET image.
        ct_channel: nnU-Net channel suffix of the CT image.
        hidden: if given, the hidden folders passed over are appended to it.
        series: the PT/CT series to take in DICOM studies (default: chosen by the rules of
            ``dicom_select``).

    Raises:
        InputPathError: a path does not exist, or nothing below it looks like a study.
    """
    if pet_channel == ct_channel:
        raise ValueError(f"PET and CT channels must differ, both are {pet_channel!r}")
    refs: list[StudyRef] = []
    seen_dirs: set[str] = set()
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise InputPathError(f"{path}: no such file or folder")
        if path.is_file():
            split = split_image_name(path.name)
            match = _NNUNET_FILE.match(split[0]) if split else None
            found = [r for r in _nnunet_studies(path.parent, pet_channel, ct_channel)
                     if match is not None and r.case_id == match["case"]]
        else:
            found, dicom = [], []
            for folder in _walk(path, seen_dirs, hidden):
                found.extend(_studies_in(folder, pet_channel, ct_channel))
                dicom.extend(_dicom_files(folder))
            found.extend(_dicom_studies(dicom, series))
        if not found:
            raise InputPathError(
                f"{path}: no study found (expected SUV.* + CTres.* folders, images/pet + images/ct, "
                f"nnU-Net files <case>_{pet_channel}.* / <case>_{ct_channel}.*, or DICOM PT and CT series)")
        refs.extend(found)
    return _unique_ids(refs)


def _walk(root: Path, seen: set[str], hidden: list[Path] | None = None):
    """Folders below root (root included), sorted, hidden ones passed over (logged), links followed once."""
    for current, dirs, _files in os.walk(root, followlinks=True):
        real = os.path.realpath(current)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        for name in sorted(d for d in dirs if d.startswith(".")):
            log.warning("%s: hidden folder not searched (its name starts with '.'); give it as an input "
                        "to search it", Path(current) / name)
            if hidden is not None:
                hidden.append(Path(current) / name)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        folder = Path(current)
        if _grand_challenge_images(folder) is not None:
            dirs[:] = [d for d in dirs if d != "images"]
        yield folder


def _image_files(folder: Path) -> dict[str, Path]:
    """Image files directly in ``folder`` by stem (hidden and partial files skipped)."""
    out = {}
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return out
    for entry in entries:
        if entry.name.startswith(".") or not entry.is_file():
            continue
        split = split_image_name(entry.name)
        if split is not None:
            out.setdefault(split[0], Path(entry.path))
    return out


def _dicom_files(folder: Path) -> list[Path]:
    """Files directly in ``folder`` that are DICOM (not image-named, not hidden, ``DICM`` marker)."""
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return []
    return [Path(e.path) for e in entries if not e.name.startswith(".") and e.is_file()
            and split_image_name(e.name) is None and is_dicom(Path(e.path))]


def _dicom_studies(files: list[Path], series: SeriesChoice) -> list[StudyRef]:
    """DICOM studies of ``files``; a study beside an unreadable DICOM file is refused.

    An unreadable file may be one of the study's slices, and a series read without it would be
    cut short without a word: so its study fails, naming the file.
    """
    if not files:
        return []
    headers, unreadable = read_headers(files)
    for error in unreadable:
        log.error("%s", error)
    refs = []
    for pick in pick_studies(group_series(headers), series):
        problem = pick.problem
        chosen = [s for s in (pick.pet, pick.ct) if s is not None]
        folders = {Path(f).parent for s in chosen for f in s.files}
        near = [e for e in unreadable if e.path.parent in folders]
        if problem is None and near:
            problem = DicomReadError(
                near[0].path, f"this DICOM file beside the study's series cannot be read ({len(near)} such file(s)); "
                "it may be one of their slices, so the study is not run: copy or export it again, or move it "
                "out of the folder if it does not belong to the study", value=len(near))
        pet, ct = pick.pet, pick.ct
        folder = common_folder([s.files[0] for s in chosen]) if chosen else Path(files[0]).parent
        refs.append(StudyRef(pick.raw_id, "dicom", folder, pet.files[0] if pet else None, ct.files[0] if ct else None,
                             None, problem, pet, ct, tuple(pick.notes)))
    return refs


def _studies_in(folder: Path, pet_channel: str, ct_channel: str) -> list[StudyRef]:
    gc = _grand_challenge_study(folder)
    if gc is not None:
        return [gc]
    files = _image_files(folder)
    if any(name in files for name in AUTOPET_NAMES):
        return [_autopet_study(folder, files)]
    return _nnunet_studies(folder, pet_channel, ct_channel)


def _autopet_study(folder: Path, files: dict[str, Path]) -> StudyRef:
    parent = folder.parent.name
    raw_id = f"{parent}_{folder.name}" if parent.upper().startswith("PETCT_") else folder.name
    pet, ct = files.get("SUV"), files.get("CTres", files.get("CT"))
    problem = None
    if pet is None:
        hint = " (PET.* is in Bq/mL: convert it to SUV first)" if "PET" in files else ""
        problem = MissingImageError(folder, f"no SUV.* image in this autoPET study folder{hint}")
    elif ct is None:
        problem = MissingImageError(folder, "no CTres.* (or CT.*) image in this autoPET study folder")
    return StudyRef(raw_id, "autopet", folder, pet, ct, files.get("SEG"), problem)


def _grand_challenge_images(folder: Path) -> Path | None:
    images = folder / "images"
    if (images / "pet").is_dir() or (images / "ct").is_dir():
        return images
    return None


def _grand_challenge_study(folder: Path) -> StudyRef | None:
    images = _grand_challenge_images(folder)
    if images is None:
        return None
    picked: dict[str, Path | None] = {}
    problem: StudyError | None = None
    for role in ("pet", "ct"):
        candidates = list(_image_files(images / role).values()) if (images / role).is_dir() else []
        picked[role] = candidates[0] if len(candidates) == 1 else None
        if not candidates and problem is None:
            problem = MissingImageError(images / role, f"no {role.upper()} image in this folder")
        elif len(candidates) > 1 and problem is None:
            problem = AmbiguousStudyError(
                images / role, f"{len(candidates)} {role.upper()} images ({', '.join(p.name for p in candidates)}); "
                "a grand-challenge study folder holds exactly one; put each study in its own folder",
                value=len(candidates))
    pet = picked["pet"]
    raw_id = split_image_name(pet.name)[0] if pet is not None else folder.name
    return StudyRef(raw_id, "grand-challenge", folder, pet, picked["ct"], None, problem)


def _nnunet_studies(folder: Path, pet_channel: str, ct_channel: str) -> list[StudyRef]:
    cases: dict[str, dict[str, Path]] = {}
    for stem, path in _image_files(folder).items():
        match = _NNUNET_FILE.match(stem)
        if match is not None:
            cases.setdefault(match["case"], {})[match["channel"]] = path
    labels_dir = folder.parent / folder.name.replace("images", "labels", 1) if folder.name.startswith("images") else None
    labels = _image_files(labels_dir) if labels_dir is not None and labels_dir.is_dir() else {}
    refs = []
    for case, channels in sorted(cases.items()):
        pet, ct = channels.get(pet_channel), channels.get(ct_channel)
        problem = None
        for role, channel, found in (("PET", pet_channel, pet), ("CT", ct_channel, ct)):
            if found is None and problem is None:
                problem = MissingImageError(
                    folder, f"case {case!r} has no {role} file {case}_{channel}.* (channels found: "
                    f"{', '.join(sorted(channels))}); set the channel order if it differs")
        refs.append(StudyRef(case, "nnunet", folder, pet, ct, labels.get(case), problem))
    return refs


def _unique_ids(refs: list[StudyRef]) -> list[StudyRef]:
    taken: dict[str, Path] = {}
    out = []
    for ref in refs:
        base = sanitize_case_id(ref.case_id)
        case_id, n = base, 1
        while case_id in taken:
            n += 1
            case_id = f"{base}-{n}"
        if case_id != base:
            log.warning("case id %r of %s is taken by %s; this study is written as %r (each output's "
                        "provenance record names its folder)", base, ref.folder, taken[base], case_id)
        taken[case_id] = ref.folder
        out.append(replace(ref, case_id=case_id))
    return out
