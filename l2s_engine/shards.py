"""Cohorts in parts: which studies part K of N runs, and merging the parts' reports.

Any number of ``l2s-infer --num-parts N --part-id K`` processes, on any machines sharing the
output folder, split one cohort without talking to each other: each takes every N-th study
of the list sorted by case id (the ids are made unique before the split, so every part sees
the same ids), writes its studies' outputs (disjoint by case id) and its own
``report.part-K-of-N.json`` and ``lesions.part-K-of-N.csv``, never another part's.
``merge`` (``l2s-report OUT``) joins the parts into ``report.json`` and ``lesions.csv``.

A part's report is first written when the part starts, with ``finished`` null, and again
when it ends: a part killed mid-run is told from one never started.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from .errors import L2SError, OutputError

_PART_FILE = re.compile(r"^report\.part-(\d+)-of-(\d+)\.json$")


class ShardError(L2SError):
    """--num-parts / --part-id are not a valid pair."""


def check_part(num_parts: int, part_id: int) -> None:
    """Raise ShardError unless 0 <= part_id < num_parts."""
    if num_parts < 1 or not 0 <= part_id < num_parts:
        raise ShardError(f"--part-id {part_id} of --num-parts {num_parts}: parts are numbered 0 to "
                         f"{max(num_parts, 1) - 1}; give --num-parts N >= 1 and 0 <= --part-id < N")


def part_of(items: list, num_parts: int, part_id: int, key=lambda r: r.case_id) -> list:
    """The studies of part ``part_id``: every ``num_parts``-th of ``items`` sorted by ``key``."""
    check_part(num_parts, part_id)
    ordered = sorted(items, key=key)
    return ordered[part_id::num_parts]


def cohort_key(refs) -> dict:
    """What every part of one cohort must agree on: the number of studies and a hash of their ids and folders."""
    digest = hashlib.sha256()
    for ref in sorted(refs, key=lambda r: r.case_id):
        digest.update(f"{ref.case_id}\0{Path(ref.folder).resolve()}\n".encode())
    return {"studies": len(refs), "sha256": digest.hexdigest()}


def part_names(num_parts: int, part_id: int) -> tuple[str, str]:
    """(report file, lesions file) of one part."""
    return f"report.part-{part_id}-of-{num_parts}.json", f"lesions.part-{part_id}-of-{num_parts}.csv"


@dataclass
class Merged:
    """What ``merge`` found: the merged report and what keeps it from being complete."""

    report: dict
    lesions: list[dict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def find_parts(out_dir: Path) -> dict[tuple[int, int], Path]:
    """The part reports in ``out_dir`` by (part id, number of parts)."""
    found = {}
    for path in sorted(Path(out_dir).glob("report.part-*-of-*.json")):
        match = _PART_FILE.match(path.name)
        if match:
            found[(int(match[1]), int(match[2]))] = path
    return found


def merge(out_dir: Path) -> Merged:
    """Join the part reports of ``out_dir`` (see the module docstring).

    Problems (a part missing or unfinished, parts of different splits or cohorts, a study in two
    parts) are listed in ``Merged.problems``; the merged report still holds every study found,
    once, with ``complete`` false.

    Raises:
        OutputError: no part report, or one that cannot be read.
    """
    parts = find_parts(out_dir)
    if not parts:
        raise OutputError(f"{out_dir}: no report.part-K-of-N.json here; give the output folder of "
                          "l2s-infer runs made with --num-parts N --part-id K")
    reports = {key: _read(path) for key, path in parts.items()}
    problems = []
    splits = sorted({n for _, n in reports})
    if len(splits) > 1:
        problems.append(f"parts of different splits are here ({', '.join(f'of {n}' for n in splits)}): the "
                        "cohort was split twice; delete the parts of the old split and run l2s-report again")
    total = splits[-1]
    for k in range(total):
        report = reports.get((k, total))
        if report is None:
            problems.append(f"part {k} of {total} is missing (never started, or its report was removed): run "
                            f"l2s-infer ... --num-parts {total} --part-id {k}")
        elif not report.get("finished"):
            problems.append(f"part {k} of {total} is unfinished (still running, or killed): run it again with the "
                            "same arguments; its done studies are skipped")
    cohorts = {json.dumps(r.get("part", {}).get("cohort"), sort_keys=True) for r in reports.values()}
    if len(cohorts) > 1:
        problems.append("the parts were run on different study lists (studies added or removed between parts); "
                        "run every part again on the same inputs")
    studies, seen = [], {}
    for (k, n), report in sorted(reports.items()):
        for study in report.get("studies", []):
            if study["case_id"] in seen:
                problems.append(f"study {study['case_id']} is in part {seen[study['case_id']]} and in part {k} of {n}")
                continue
            seen[study["case_id"]] = k
            studies.append(study)
    first = reports[min(reports)]
    merged = {**first, "part": None, "parts": {f"{k}-of-{n}": {"finished": r.get("finished"),
                                                              "studies": len(r.get("studies", []))}
                                               for (k, n), r in sorted(reports.items())},
              "studies": sorted(studies, key=lambda s: s["case_id"]), "complete": not problems,
              "problems": problems}
    lesions = []
    for (k, n) in sorted(reports):
        path = Path(out_dir) / part_names(n, k)[1]
        if path.is_file():
            with open(path, newline="", encoding="utf-8") as handle:
                lesions.extend(csv.DictReader(handle))
    return Merged(merged, lesions, problems)


def _read(path: Path) -> dict:
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise OutputError(f"{path}: cannot read this part's report ({exc}); run the part again") from exc
    if not isinstance(report, dict):
        raise OutputError(f"{path}: not an l2s-infer report; run the part again")
    return report
