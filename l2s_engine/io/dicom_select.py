"""Choosing each DICOM study's PT and CT series, and naming the study.

A study is one PT series and one CT series of one StudyInstanceUID. Rules:

- PT: the one given by ``--pet-series`` (number or UID); else the only PT series; else the only
  one whose CorrectedImage holds ATTN and DECY (attenuation- and decay-corrected: the one SUV
  can be computed from); else the choice is refused, listing the series.
- CT: the one given by ``--ct-series``; else the image CT series (localizers and one-slice
  series are not candidates) sharing the PT's FrameOfReferenceUID; when none shares it, the
  only CT series of the study, with a warning (its position must still be right); several
  candidates are refused, listing them.
- Case id: PatientID_StudyDate, with the PT series number added when one patient has several
  studies that day.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from ..errors import AmbiguousStudyError, MissingImageError, StudyError
from .dicom_files import DicomSeries

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SeriesChoice:
    """What the user asked for: a SeriesNumber or SeriesInstanceUID per role (None: choose)."""

    pet: str | None = None
    ct: str | None = None


@dataclass
class DicomPick:
    """The series chosen for one study, or why none could be."""

    raw_id: str
    pet: DicomSeries | None
    ct: DicomSeries | None
    notes: list[str] = field(default_factory=list)
    problem: StudyError | None = None


def pick_studies(series: list[DicomSeries], choice: SeriesChoice = SeriesChoice()) -> list[DicomPick]:
    """One pick per StudyInstanceUID that holds a PT series; in study order."""
    studies: dict[str, list[DicomSeries]] = {}
    for item in series:
        studies.setdefault(item.study_uid, []).append(item)
    picks = []
    for uid, members in studies.items():
        if any(s.modality == "PT" for s in members):
            picks.append(_pick(members, choice))
        else:  # said, not dropped silently: the user may have expected it to run
            log.warning("%s: DICOM study %s holds no PT series (%s); passed over: l2s-infer segments PET/CT studies",
                        members[0].folder, uid, "; ".join(f"{s.modality} {s.label()}" for s in members))
    _name(picks)
    return picks


def _pick(members: list[DicomSeries], choice: SeriesChoice) -> DicomPick:
    pts = [s for s in members if s.modality == "PT"]
    base = f"{pts[0].patient_id or 'patient'}_{pts[0].study_date or 'nodate'}"
    pick = DicomPick(base, None, None)
    try:
        pick.pet = _choose_pet(pts, choice.pet)
        pick.ct = _choose_ct(members, pick.pet, choice.ct, pick.notes)
    except StudyError as exc:
        pick.problem = exc
    return pick


def _given(candidates: list[DicomSeries], wanted: str, role: str, option: str, everything: list[DicomSeries]):
    found = [s for s in candidates if wanted in (s.uid, str(s.number))]
    if len(found) == 1:
        return found[0]
    listing = "; ".join(s.label() for s in everything)
    raise MissingImageError(
        everything[0].folder, f"{option} {wanted!r} matches {len(found)} {role} series of this study "
        f"({listing}); give the SeriesNumber or SeriesInstanceUID of one of them", value=wanted)


def _choose_pet(pts: list[DicomSeries], wanted: str | None) -> DicomSeries:
    if wanted is not None:
        return _given(pts, wanted, "PT", "--pet-series", pts)
    if len(pts) == 1:
        return pts[0]
    corrected = [s for s in pts if {"ATTN", "DECY"} <= set(s.corrected_image)]
    if len(corrected) == 1:
        return corrected[0]
    raise AmbiguousStudyError(
        pts[0].folder, f"{len(pts)} PT series in study {pts[0].study_uid} and {len(corrected)} of them "
        f"attenuation- and decay-corrected ({'; '.join(s.label() for s in pts)}); choose one with "
        "--pet-series NUMBER|UID", value=len(pts))


def _choose_ct(members: list[DicomSeries], pet: DicomSeries, wanted: str | None, notes: list[str]) -> DicomSeries:
    cts = [s for s in members if s.modality == "CT"]
    if wanted is not None:
        return _given(cts, wanted, "CT", "--ct-series", cts or members)
    images = [s for s in cts if "LOCALIZER" not in s.image_type and len(s.files) > 1]
    if not images:
        raise MissingImageError(
            pet.folder, f"study {pet.study_uid} has no CT image series beside its PT {pet.label()} (series "
            f"found: {'; '.join(s.label() for s in members)}); put the study's CT series in the input", value=None)
    same_frame = [s for s in images if s.frame_uid and s.frame_uid == pet.frame_uid]
    if len(same_frame) == 1:
        return same_frame[0]
    if not same_frame and len(images) == 1:
        notes.append(f"the CT {images[0].label()} does not share the PT's FrameOfReferenceUID "
                     f"({images[0].frame_uid or 'none'} vs {pet.frame_uid or 'none'}); it is used because it is "
                     "the study's only CT: check the fusion on the QC picture")
        return images[0]
    listing = "; ".join(s.label() for s in (same_frame or images))
    raise AmbiguousStudyError(
        pet.folder, f"{len(same_frame or images)} CT series could go with the PT {pet.label()} ({listing}); "
        "choose one with --ct-series NUMBER|UID", value=len(same_frame or images))


def _name(picks: list[DicomPick]) -> None:
    counts: dict[str, int] = {}
    for pick in picks:
        counts[pick.raw_id] = counts.get(pick.raw_id, 0) + 1
    for pick in picks:
        if counts[pick.raw_id] > 1 and pick.pet is not None and pick.pet.number is not None:
            pick.raw_id = f"{pick.raw_id}_s{pick.pet.number}"
