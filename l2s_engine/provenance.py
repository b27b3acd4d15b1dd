"""What each published output was made from: the record that makes "done" mean verified.

After a study's outputs are written (each verified, then renamed into place), a record is
written beside them: the input files (absolute path, size, modification time), the engine
(sha256 of its manifest, which lists every model file's hash) and the options that change the
mask, and each output's size and modification time. A study is skipped on a later run only
when its record matches all of that; otherwise it is redone. So a mask from another study
that once had the same case id, from changed inputs, another engine or other thresholds, or a
file replaced by hand, is never taken for done.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from . import __version__
from .files import write_text_atomic
from .io.discovery import StudyRef

RECORD_VERSION = 1
RECORDS = "provenance"  # the records' folder, inside the output folder
# Options that change the mask; batch sizes, threads and the cue's extent do not.
MASK_OPTIONS = ("backend", "device", "precision", "tta", "skip_air", "rule")


def file_stamp(path: Path) -> dict:
    """A cheap fingerprint of a file: absolute path, size and modification time (ns)."""
    stat = os.stat(path)
    return {"path": str(Path(path).resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def inputs_of(ref: StudyRef) -> dict:
    """The fingerprints of a study's input files, by role (a DICOM series: one over all its files)."""
    if ref.is_dicom:
        return {role: series_stamp(series.files) for role, series in (("pet", ref.pet_series), ("ct", ref.ct_series))}
    return {role: file_stamp(path) for role, path in (("pet", ref.pet), ("ct", ref.ct), ("seg", ref.seg))
            if path is not None}


def series_stamp(files) -> dict:
    """A fingerprint of a series' files: their count and a sha256 over each file's stamp.

    A slice added, removed, replaced or touched changes it, so a mask is never taken for done
    when its series changed.
    """
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(json.dumps(file_stamp(path), sort_keys=True).encode())
    return {"files": len(files), "sha256": digest.hexdigest()}


def run_key(engine) -> dict:
    """What a run contributes to a mask: l2s-engine's version, the engine and the options."""
    options = {k: getattr(engine.options, k) for k in MASK_OPTIONS}
    fusion = {k: getattr(engine.fusion, k) for k in ("cue_threshold", "low_threshold", "high_threshold")}
    # what each network ran in: "auto" is bf16 on one CPU and fp32 on another
    ran = {role: [n["precision"] for n in nets] for role, nets in engine.networks().items()}
    return {"l2s_engine": __version__, "manifest_sha256": engine.manifest.sha256,
            **options, **fusion, "precision_ran": ran}


def make_record(ref: StudyRef, run: dict, outputs: dict[str, Path], **kept) -> dict:
    """The record of one study whose ``outputs`` have just been published.

    ``kept``: what a later run that skips the study reports of it (its readout, how its inputs
    were read); not part of the check.
    """
    return {"version": RECORD_VERSION, "case_id": ref.case_id, "source": str(Path(ref.folder).resolve()),
            "inputs": inputs_of(ref), "run": run, "outputs": {k: file_stamp(p) for k, p in outputs.items()}, **kept}


def read_record(path: Path) -> dict | None:
    """A record written by ``make_record``, or None when missing or unreadable."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def why_not_done(record: dict | None, ref: StudyRef, run: dict, outputs: dict[str, Path]) -> str | None:
    """Why the outputs of ``ref`` cannot be taken as done (None: they can, skip the study).

    Args:
        record: the study's record from an earlier run (None: none).
        ref: the study as found now.
        run: this run's ``run_key``.
        outputs: every file this run would write for the study.
    """
    if record is None:
        return "no record of what its outputs were made from"
    if record.get("version") != RECORD_VERSION:
        return f"record version {record.get('version')!r}"
    if record.get("source") != str(Path(ref.folder).resolve()):
        return f"its outputs were made from {record.get('source')}, not {Path(ref.folder).resolve()}"
    try:
        now = inputs_of(ref)
    except OSError as exc:
        return f"an input cannot be read ({exc})"
    if record.get("inputs") != now:
        changed = sorted(k for k in {*now, *record.get("inputs", {})} if now.get(k) != record.get("inputs", {}).get(k))
        return f"input {', '.join(changed)} changed (path, size or time)"
    earlier = record.get("run", {})
    changed = sorted(k for k in {*run, *earlier} if run.get(k) != earlier.get(k))
    if changed:
        return f"made with another {', '.join(changed)}"
    for key, path in outputs.items():
        stamp = record.get("outputs", {}).get(key)
        try:
            ok = stamp is not None and file_stamp(path) == stamp
        except OSError:
            ok = False
        if not ok:
            return f"output {key} ({path.name}) is missing or not the file that was written"
    return None


def write_record(path: Path, record: dict) -> Path:
    """Write a record atomically (after the outputs it vouches for)."""
    return write_text_atomic(path, json.dumps(record, indent=1, sort_keys=True) + "\n")
