"""The report of a run: one record per study, report.json and lesions.csv (written atomically).

``scheduler`` fills the records; ``cli`` writes them out, and ``l2s-report`` merges the parts of a
cohort run (``shards``) through the same records.
"""

from __future__ import annotations

import json
import math
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from . import __version__
from .files import write_csv_atomic, write_text_atomic
from .metrics import CONVENTIONS, aggregate
from .readout import LESION_CSV_FIELDS

REPORT = "report.json"
LESIONS = "lesions.csv"
READOUT_KEYS = ("tmtv_ml", "tlg_ml", "suvmax", "suvmean", "suvpeak", "lesion_count")


@dataclass
class StudyRecord:
    """What happened to one study (a row of report.json)."""

    case_id: str
    source: str = ""                 # the study folder the inputs came from
    status: str = "pending"          # ok | failed | skipped
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    work: dict[str, int] = field(default_factory=dict)
    spacing: dict = field(default_factory=dict)  # native and network spacing, resampling (Segmentation.spacing)
    inputs: dict = field(default_factory=dict)   # how the inputs were read (DICOM: series, SUV factor)
    mask_voxels: int | None = None
    mask_ml: float | None = None
    tmtv_ml: float | None = None     # the PET readout (l2s_engine.readout): what a reader looks at
    tlg_ml: float | None = None
    suvmax: float | None = None
    suvmean: float | None = None
    suvpeak: float | None = None
    lesion_count: int | None = None
    peak_rss_mb: float | None = None
    metrics: dict | None = None
    lesions: list[dict] = field(default_factory=list)  # rows of lesions.csv (not in report.json)

    @classmethod
    def from_dict(cls, data: dict) -> StudyRecord:
        """A record from its report.json form (keys it does not know are left out)."""
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def set_readout(self, summary: dict, lesions: list[dict]) -> None:
        """Take a study's readout (``Readout.summary()`` and its lesion rows)."""
        for key in READOUT_KEYS:
            setattr(self, key, summary.get(key))
        self.lesions = lesions



def summary(records: list[StudyRecord]) -> dict:
    """Counts, mean stage times of the studies run, and the metrics in both conventions."""
    ran = [r for r in records if r.status == "ok"]
    stages = sorted({k for r in ran for k in r.timings})
    out = {"studies": len(records), **{s: sum(r.status == s for r in records) for s in ("ok", "failed", "skipped")},
           "mean_seconds": {k: float(np.mean([r.timings.get(k, 0.0) for r in ran])) for k in stages} if ran else {},
           "peak_rss_mb": max((r.peak_rss_mb or 0.0) for r in records) if records else 0.0}
    scored = [r.metrics for r in ran if r.metrics is not None]
    if scored:
        from .metrics import CaseMetrics

        cases = [CaseMetrics(**m) for m in scored]
        out["metrics"] = {c: aggregate(cases, c) for c in CONVENTIONS}
    return out


def write_report(path: Path, engine, records: list[StudyRecord], extra: dict) -> Path:
    """report.json: backend, versions, the resolved run, options, per-study records and the summary (atomic).

    ``engine``: an opened engine (``core.EngineCore``) or a stand-in with ``describe()``, ``run``
    and ``options`` (a Ray run's driver).

    Raises:
        OutputError: it cannot be written (full disk, permissions); the previous one is kept.
    """
    import SimpleITK as sitk

    report = {"l2s_engine": __version__, "python": platform.python_version(), "numpy": np.__version__,
              "SimpleITK": sitk.Version_VersionString(), **_versions("pydicom", "highdicom"),
              "backend": engine.describe(), "run": engine.run.describe(), "options": asdict(engine.options), **extra,
              "summary": summary(records), "studies": [_row(r) for r in records]}
    return write_text_atomic(path, json.dumps(_finite(report), indent=2, default=_json_default, allow_nan=False) + "\n")


def _row(record: StudyRecord) -> dict:
    """A study's entry of report.json (its lesions go to lesions.csv)."""
    row = asdict(record)
    row.pop("lesions")
    return row


def write_lesions(path: Path, records: list[StudyRecord]) -> Path:
    """lesions.csv: one row per lesion of every study done (this run or earlier), atomically.

    Raises:
        OutputError: it cannot be written; the previous one is kept.
    """
    rows = [{k: _csv_value(row.get(k)) for k in LESION_CSV_FIELDS}
            for record in records if record.status in ("ok", "skipped") for row in record.lesions]
    return write_csv_atomic(path, LESION_CSV_FIELDS, rows)


def _csv_value(value):
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else value


def _versions(*packages: str) -> dict:
    """Installed versions of ``packages`` (None where one is not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in packages:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def _finite(value):
    """``value`` with every NaN replaced by None (JSON has no NaN; autoPET's NaN means n/a)."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _json_default(value):
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
