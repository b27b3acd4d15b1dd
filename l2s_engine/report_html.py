"""report.html: one self-contained page per run, made from report.json (``l2s-report OUT``).

The page needs nothing but the output folder: no network, no external script, stylesheet or
font. QC pictures are relative links to ``qc/<case_id>.png`` beside it, shown only where the
file exists. Every string from the report is escaped: case ids, warnings and error messages
come from user files. A Content-Security-Policy admits only this page's own script and style
(by hash) and images from its folder, so a string that slipped past escaping could not run.

Standard library only: the page can be regenerated where only the report folder is at hand.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import html
import json
import logging
import math
import re
from pathlib import Path
from urllib.parse import quote

from . import __version__
from .errors import OutputError
from .files import write_text_atomic

log = logging.getLogger(__name__)

REPORT = "report.json"  # the same name as run_report.REPORT (not imported: it pulls in numpy)
PAGE = "report.html"
QC_FOLDER = "qc"
# A whole-body TMTV above 2 L is rare even in advanced lymphoma or melanoma (autoPET's largest
# are of that order); a mask that big more often holds physiological uptake (brain, bladder,
# heart) or comes from a wrong SUV scaling, so it is flagged for a look.
LARGE_TMTV_ML = 2000.0
THUMB_WIDTH_PX = 96
_BAR_PX = 100  # the per-study stage bar of the longest study
# Pipeline order of the timed stages; stages not listed here follow in name order.
STAGE_ORDER = ("read", "upload", "preprocess", "resample", "2d", "3d", "fusion", "readout", "write")
STAGE_COLOURS = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
                 "#9c755f", "#bab0ac")
PACKAGES = ("python", "numpy", "SimpleITK", "pydicom", "highdicom")

_CSS = """
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif; color: #1d1d1f;
       margin: 1.5em 2em; background: #fff; }
h1 { font-size: 1.5em; margin: 0 0 .2em; }
h2 { font-size: 1.15em; margin: 1.6em 0 .5em; border-bottom: 1px solid #ddd; padding-bottom: .2em; }
.sub { color: #555; margin: 0 0 1em; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .2em 1.2em; margin: 0; }
dl.facts dt { font-weight: 600; color: #444; }
dl.facts dd { margin: 0; }
table { border-collapse: collapse; }
th, td { border-bottom: 1px solid #e3e3e3; padding: .35em .5em; vertical-align: top; text-align: left; }
thead th { background: #f4f4f6; position: sticky; top: 0; z-index: 1; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
th button { font: inherit; font-weight: 600; border: 0; background: none; padding: 0; cursor: pointer;
            color: #1d4f91; text-align: inherit; }
th[aria-sort="ascending"] button::after { content: " \\25B2"; }
th[aria-sort="descending"] button::after { content: " \\25BC"; }
td.case { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: .85em; overflow-wrap: anywhere;
          min-width: 9em; max-width: 15em; }
table.studies { width: 100%; }
table.studies thead th { vertical-align: bottom; }
td.flags { min-width: 15em; }
thead th.num { white-space: normal; }
svg.tbar { display: block; margin: .3em 0 0 auto; background: #f0f0f0; }
dl.options { display: grid; grid-template-columns: repeat(auto-fill, minmax(15em, 1fr)); gap: .2em 1.2em; margin: .4em 0; }
dl.options div { display: flex; gap: .5em; }
dl.options dt { font-weight: 600; color: #444; }
dl.options dd { margin: 0; font-family: ui-monospace, Menlo, Consolas, monospace; font-size: .9em; overflow-wrap: anywhere; }
td.qc img { width: """ + str(THUMB_WIDTH_PX) + """px; height: auto; display: block; border: 1px solid #ccc;
            background: #fff; }
td.qc { width: """ + str(THUMB_WIDTH_PX) + """px; }
.na { color: #999; }
.status-ok { color: #17692f; font-weight: 600; }
.status-failed { color: #b00020; font-weight: 600; }
.status-skipped { color: #7a5b00; font-weight: 600; }
.flag { display: inline-block; border-radius: 3px; padding: 0 .4em; margin: 0 .3em .25em 0; font-size: .85em;
        background: #eef1f5; color: #333; white-space: nowrap; }
.flag.bad { background: #fde2e4; color: #8a0015; }
.flag.warn { background: #fff1cc; color: #6b4f00; }
.msg { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: .8em; white-space: pre-wrap;
       word-break: break-word; max-width: 40em; margin: .2em 0 .4em; }
details summary { cursor: pointer; color: #1d4f91; }
ul.legend { margin: .3em 0; padding-left: 1.2em; color: #444; }
svg text { font: 12px system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif; fill: #333; }
"""

# Click a header (its button) to sort by that column; again to reverse. Numbers compare as
# numbers, text in natural order (PETCT_2 before PETCT_10); a cell without a value
# (data-v="") stays at the bottom in either direction.
_SCRIPT = """
(function () {
  function sortBy(th) {
    var table = th.closest("table"), body = table.tBodies[0], col = th.cellIndex;
    var numeric = th.getAttribute("data-sort") === "num";
    var ascending = th.getAttribute("aria-sort") !== "ascending";
    table.querySelectorAll("th[data-sort]").forEach(function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = a.cells[col].getAttribute("data-v") || "", y = b.cells[col].getAttribute("data-v") || "";
      if (x === "" || y === "") { return (x === "") - (y === ""); }
      var c = numeric ? parseFloat(x) - parseFloat(y) : x.localeCompare(y, undefined, {numeric: true});
      return ascending ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }
  document.querySelectorAll("table.studies th[data-sort]").forEach(function (th) {
    th.addEventListener("click", function () { sortBy(th); });
  });
})();
"""


def render_html(report: dict, out_dir: Path, generated: dt.datetime | float | str | None = None) -> str:
    """The HTML page of one run's ``report`` (the content of report.json).

    Args:
        report: report.json as a dict; every key but ``studies`` may be absent (older reports).
        out_dir: the folder the page will be written into: QC pictures are linked as
            ``qc/<case_id>.png`` where that file exists under it.
        generated: when the run was made, shown where the report itself does not say
            (``finished`` or ``started``): a datetime, a POSIX time (e.g. report.json's mtime)
            or a string.

    Returns:
        The whole page, UTF-8 text, with no reference outside ``out_dir``.
    """
    out_dir = Path(out_dir)
    studies = [s for s in report.get("studies") or [] if isinstance(s, dict)]
    backend = _dict(report.get("backend"))
    title = f"l2s-engine report: {len(studies)} stud{'y' if len(studies) == 1 else 'ies'}"
    body = "\n".join([
        f"<h1>{_e(title)}</h1>",
        f'<p class="sub">{_e(_subtitle(report, backend, generated))}</p>',
        "<h2>Run</h2>", _run_facts(report, backend, generated),
        _summary_metrics(report),
        "<h2>Stage times</h2>", _stage_chart(report, studies),
        "<h2>Studies</h2>", _legend(), _studies_table(studies, out_dir),
        "<h2>Options</h2>", _options(report),
    ])
    script_hash = _csp_hash(_SCRIPT)
    style_hash = _csp_hash(_CSS)
    csp = (f"default-src 'none'; img-src 'self' file:; style-src '{style_hash}'; script-src '{script_hash}'; "
           "base-uri 'none'; form-action 'none'")
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f'<meta http-equiv="Content-Security-Policy" content="{_e(csp)}">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f'<meta name="generator" content="l2s-engine {_e(__version__)}">\n'
            f"<title>{_e(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n{body}\n"
            f"<script>{_SCRIPT}</script>\n</body>\n</html>\n")


def write_html(out_dir: Path) -> Path:
    """Write ``out_dir/report.html`` from ``out_dir/report.json`` (atomically); returns its path.

    Raises:
        OutputError: report.json is missing, unreadable or not a report; or the page cannot
            be written.
    """
    out_dir = Path(out_dir)
    path = out_dir / REPORT
    try:
        text = path.read_text(encoding="utf-8")
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        raise OutputError(f"{path}: no report.json there; give the output folder of an l2s-infer run "
                          f"(its -o), or run l2s-infer -o {out_dir} first") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise OutputError(f"{path}: cannot read it ({getattr(exc, 'strerror', None) or exc}); fix its "
                          "permissions, or run l2s-infer again to rewrite it") from exc
    try:
        report = json.loads(text)
    except json.JSONDecodeError as exc:
        raise OutputError(f"{path}: not valid JSON ({exc}); the file is damaged: run l2s-infer again "
                          "to rewrite it") from exc
    if not isinstance(report, dict) or not isinstance(report.get("studies", []), list):
        raise OutputError(f"{path}: not an l2s-infer report (expected an object with a list of studies); "
                          "give the output folder of an l2s-infer run")
    return write_text_atomic(out_dir / PAGE, render_html(report, out_dir, generated=mtime))


# ---------------------------------------------------------------------------------------------
# the parts of the page


def _subtitle(report: dict, backend: dict, generated) -> str:
    parts = [f"l2s-engine {report.get('l2s_engine') or '?'}"]
    if backend.get("name"):
        parts.append(" ".join(str(p) for p in (backend["name"], backend.get("version")) if p))
    when = _when(report, generated)
    if when:
        parts.append(when)
    return " \u00b7 ".join(parts)


def _when(report: dict, generated) -> str | None:
    """The run's date: from the report when it says, else ``generated`` (the caller's)."""
    for key in ("finished", "started", "generated"):
        if isinstance(report.get(key), str) and report[key]:
            return report[key]
    if isinstance(generated, (int, float)) and not isinstance(generated, bool):
        generated = dt.datetime.fromtimestamp(generated).astimezone()
    if isinstance(generated, dt.datetime):
        return generated.isoformat(sep=" ", timespec="seconds")
    return str(generated) if generated else None


def _run_facts(report: dict, backend: dict, generated) -> str:
    rows = [("Engine", f"l2s-engine {report.get('l2s_engine') or '?'}")]
    if backend:
        name = " ".join(str(p) for p in (backend.get("name"), backend.get("version")) if p) or "?"
        extra = [f"{k} {backend[k]}" for k in ("device", "preset", "rule") if backend.get(k)]
        rows.append(("Backend", name + (f" ({', '.join(extra)})" if extra else "")))
        rows.append(("Networks", _networks(backend)))
        if backend.get("cpu"):
            cpu = str(backend["cpu"]) + (f", bf16: {backend['cpu_bf16']}" if backend.get("cpu_bf16") else "")
            rows.append(("CPU", cpu))
        if backend.get("engine_dir"):
            rows.append(("Engine folder", backend["engine_dir"]))
    packages = [f"{p} {report[p] if report[p] is not None else 'not installed'}" for p in PACKAGES if p in report]
    if packages:
        rows.append(("Packages", ", ".join(packages)))
    when = _when(report, generated)
    rows.append(("Date", when or "unknown"))
    inputs = report.get("inputs")
    if isinstance(inputs, list) and inputs:
        rows.append(("Inputs", ", ".join(map(str, inputs))))
    summary = _dict(report.get("summary"))
    if summary:
        counts = ", ".join(f"{summary[k]} {k}" for k in ("ok", "failed", "skipped") if k in summary)
        rows.append(("Studies", f"{summary.get('studies', '?')} ({counts})" if counts else summary.get("studies")))
    if _num(report.get("wall_seconds")) is not None:
        rows.append(("Wall time", f"{report['wall_seconds']:.1f} s"))
    if _num(summary.get("peak_rss_mb")) is not None:
        rows.append(("Peak memory", f"{summary['peak_rss_mb']:.0f} MB (resident)"))
    items = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in rows if v is not None)
    return f'<dl class="facts">{items}</dl>'


def _networks(backend: dict) -> str:
    """Per network what ran: "loc2d: fp32 (loc2d.onnx); seg3d: bf16 x5 folds (...)"."""
    networks = _dict(backend.get("networks"))
    if not networks:
        return f"precision {backend.get('precision') or '?'}"
    parts = []
    for role, folds in networks.items():
        folds = [f for f in folds if isinstance(f, dict)] if isinstance(folds, list) else []
        precisions = sorted({str(f.get("precision") or "?") for f in folds}) or ["?"]
        files = [str(f["file"]) for f in folds if f.get("file")]
        text = f"{role}: {'/'.join(precisions)}"
        text += f" \u00d7{len(folds)} folds" if len(folds) > 1 else ""
        text += f" ({', '.join(files)})" if files else ""
        parts.append(text)
    return "; ".join(parts)


def _summary_metrics(report: dict) -> str:
    metrics = _dict(_dict(report.get("summary")).get("metrics"))
    if not metrics:
        return ""
    rows = []
    for convention, m in metrics.items():
        m = _dict(m)
        rows.append(f"<tr><td>{_e(convention)}</td><td class=\"num\">{_e(m.get('cases', ''))}</td>"
                    f"<td class=\"num\">{_e(m.get('positive_cases', ''))}</td>"
                    + "".join(_num_cell(m.get(k), d) for k, d in (("dice", 3), ("fpv_ml", 2), ("fnv_ml", 2)))
                    + "</tr>")
    return ("<h2>Metrics (autoPET)</h2><table class=\"metrics\"><thead><tr><th>Convention</th>"
            "<th class=\"num\">Cases</th><th class=\"num\">With lesions</th><th class=\"num\">Dice</th>"
            "<th class=\"num\">FPV (mL)</th><th class=\"num\">FNV (mL)</th></tr></thead><tbody>"
            + "".join(rows) + "</tbody></table>")


def _mean_seconds(report: dict, studies: list[dict]) -> dict[str, float]:
    """summary.mean_seconds, or the same mean over the ok studies' timings (older reports)."""
    means = _dict(_dict(report.get("summary")).get("mean_seconds"))
    means = {k: float(v) for k, v in means.items() if _num(v) is not None}
    if means:
        return means
    ran = [_dict(s.get("timings")) for s in studies if s.get("status") == "ok"]
    stages = {k for t in ran for k in t}
    return {k: sum(_num(t.get(k)) or 0.0 for t in ran) / len(ran) for k in stages} if ran else {}


def _colour(stage: str) -> str:
    """One colour per stage, the same in the chart and in every study's bar."""
    index = STAGE_ORDER.index(stage) if stage in STAGE_ORDER else len(STAGE_ORDER) + sum(map(ord, stage))
    return STAGE_COLOURS[index % len(STAGE_COLOURS)]


def _ordered(stages) -> list[str]:
    known = [s for s in STAGE_ORDER if s in stages]
    return known + sorted(s for s in stages if s not in STAGE_ORDER)


def _stage_chart(report: dict, studies: list[dict]) -> str:
    """Horizontal bars: the mean seconds per study of each stage (inline SVG)."""
    means = _mean_seconds(report, studies)
    if not means:
        return '<p class="na">No stage times (no study ran).</p>'
    stages = _ordered(means)
    top = max(means.values())
    step = _nice_step(top)
    axis_max = step * max(1, math.ceil(top / step - 1e-9))
    label_w, plot_w, bar_h, gap, top_pad = 90, 520, 18, 6, 10
    plot_h = len(stages) * (bar_h + gap)
    width, height = label_w + plot_w + 90, top_pad + plot_h + 48

    def x(seconds: float) -> float:
        return label_w + plot_w * seconds / axis_max

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" aria-labelledby="chart-title">',
             '<title id="chart-title">Mean seconds per study of each stage</title>']
    ticks = int(round(axis_max / step))
    for i in range(ticks + 1):
        tx = x(i * step)
        parts.append(f'<line x1="{tx:.1f}" y1="{top_pad}" x2="{tx:.1f}" y2="{top_pad + plot_h}" stroke="#e3e3e3"/>')
        parts.append(f'<text x="{tx:.1f}" y="{top_pad + plot_h + 16}" text-anchor="middle">'
                     f'{_e(_tick_label(i * step, step))}</text>')
    for i, stage in enumerate(stages):
        y = top_pad + i * (bar_h + gap) + gap / 2
        colour = _colour(stage)
        w = max(x(means[stage]) - label_w, 0.5 if means[stage] > 0 else 0)
        parts.append(f'<text x="{label_w - 8}" y="{y + bar_h * 0.72:.1f}" text-anchor="end">{_e(stage)}</text>')
        parts.append(f'<rect x="{label_w}" y="{y:.1f}" width="{w:.1f}" height="{bar_h}" fill="{colour}">'
                     f'<title>{_e(stage)}: {_e(_seconds(means[stage]))} s</title></rect>')
        parts.append(f'<text x="{label_w + w + 6:.1f}" y="{y + bar_h * 0.72:.1f}">{_e(_seconds(means[stage]))} s</text>')
    parts.append(f'<line x1="{label_w}" y1="{top_pad + plot_h}" x2="{label_w + plot_w}" y2="{top_pad + plot_h}" '
                 'stroke="#666"/>')
    parts.append(f'<line x1="{label_w}" y1="{top_pad}" x2="{label_w}" y2="{top_pad + plot_h}" stroke="#666"/>')
    parts.append(f'<text x="{label_w + plot_w / 2:.0f}" y="{height - 6}" text-anchor="middle">'
                 'mean time per study (s), studies that ran</text>')
    parts.append(f'<text x="14" y="{top_pad + plot_h / 2:.0f}" text-anchor="middle" '
                 f'transform="rotate(-90 14 {top_pad + plot_h / 2:.0f})">stage</text>')
    parts.append("</svg>")
    return "".join(parts)


def _nice_step(top: float) -> float:
    """A 1/2/5 x 10^k tick step giving about five ticks up to ``top``."""
    if top <= 0:
        return 1.0
    raw = top / 5
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def _tick_label(value: float, step: float) -> str:
    decimals = max(0, -math.floor(math.log10(step))) if step < 1 else 0
    return f"{value:.{decimals}f}"


def _seconds(value: float) -> str:
    return f"{value:.2f}" if value >= 0.1 else f"{value:.3g}"


def _legend() -> str:
    return ("<details><summary>Columns and flags</summary><ul class=\"legend\">"
            "<li>TMTV: total metabolic tumour volume, the mask's volume (mL); TLG: total lesion "
            "glycolysis, SUVmean \u00d7 volume summed over lesions; lesions: 18-connected components.</li>"
            "<li>Dice, FPV, FNV: autoPET metrics against the study's label, where it has one.</li>"
            f"<li><b>large mask</b>: TMTV above {LARGE_TMTV_ML:.0f} mL (rare even in advanced disease; often "
            "physiological uptake or a wrong SUV scaling).</li>"
            "<li><b>empty mask</b>: no voxel segmented. <b>spacing resampled</b>: the study was resampled to "
            "the networks' spacing and back. <b>CT resampled</b>: the CT was not on the PET grid and was "
            "resampled onto it. <b>DICOM</b>: read from DICOM series (SUV computed from the headers).</li>"
            "<li>Click a column header to sort by it; missing values stay last.</li></ul></details>")


_COLUMNS = (  # (header, sort kind or None, numeric)
    ("QC", None, False), ("Case", "text", False), ("Status", "text", False), ("TMTV (mL)", "num", True),
    ("TLG (SUV\u00b7mL)", "num", True), ("Lesions", "num", True), ("SUVmax", "num", True),
    ("Dice", "num", True), ("FPV (mL)", "num", True), ("FNV (mL)", "num", True), ("Time (s)", "num", True),
    ("Flags", None, False),
)


def _studies_table(studies: list[dict], out_dir: Path) -> str:
    if not studies:
        return '<p class="na">No studies in this report.</p>'
    head = []
    for label, sort, numeric in _COLUMNS:
        cls = ' class="num"' if numeric else ""
        key = re.sub(r"[^a-z0-9]+", "-", label.lower().split(" (")[0]).strip("-")
        if sort:
            head.append(f'<th{cls} data-key="{key}" data-sort="{sort}"><button type="button">{_e(label)}'
                        "</button></th>")
        else:
            head.append(f'<th{cls} data-key="{key}">{_e(label)}</th>')
    longest = max((sum(_timings(s).values()) for s in studies), default=0.0)
    rows = [_study_row(s, out_dir, longest) for s in studies]
    return ('<table class="studies"><thead><tr>' + "".join(head) + "</tr></thead><tbody>\n"
            + "\n".join(rows) + "\n</tbody></table>")


def _study_row(study: dict, out_dir: Path, longest: float) -> str:
    case_id = str(study.get("case_id", ""))
    status = str(study.get("status") or "?")
    metrics = _dict(study.get("metrics"))
    # a failed study's picture, if one is there, is of an earlier run: not shown beside this run's error
    cells = [_qc_cell(case_id, out_dir) if status != "failed" else '<td class="qc"></td>',
             f'<td class="case" data-v="{_e(case_id)}">{_e(case_id)}</td>',
             f'<td class="status status-{_e(re.sub(r"[^a-z]", "", status.lower()))}" data-v="{_e(status)}">'
             f"{_e(status)}</td>",
             _num_cell(tmtv_ml(study), 1), _num_cell(study.get("tlg_ml"), 1),
             _num_cell(study.get("lesion_count"), 0), _num_cell(study.get("suvmax"), 2),
             _num_cell(metrics.get("dice"), 3), _num_cell(metrics.get("fpv_ml"), 2),
             _num_cell(metrics.get("fnv_ml"), 2), _time_cell(study, longest),
             f'<td class="flags">{_flags_html(study)}</td>']
    return f'<tr data-case="{_e(case_id)}">' + "".join(cells) + "</tr>"


def _timings(study: dict) -> dict[str, float]:
    return {k: float(v) for k, v in _dict(study.get("timings")).items() if _num(v) is not None and v >= 0}


def _time_cell(study: dict, longest: float) -> str:
    """The study's summed stage seconds over a small stacked bar of its stages (scaled to the
    longest study), each stage's seconds in the bar's tooltips and the cell's title."""
    timings = _timings(study)
    if not timings:
        return '<td class="num" data-v=""><span class="na">\u2013</span></td>'
    total = sum(timings.values())
    stages = _ordered(timings)
    breakdown = ", ".join(f"{k} {_seconds(timings[k])} s" for k in stages)
    scale = _BAR_PX / longest if longest > 0 else 0.0
    x, segments = 0.0, []
    for stage in stages:
        w = timings[stage] * scale
        if w > 0:
            segments.append(f'<rect x="{x:.2f}" y="0" width="{w:.2f}" height="8" fill="{_colour(stage)}">'
                            f"<title>{_e(stage)}: {_e(_seconds(timings[stage]))} s</title></rect>")
        x += w
    bar = (f'<svg class="tbar" width="{_BAR_PX}" height="8" viewBox="0 0 {_BAR_PX} 8" role="img" '
           f'aria-label="{_e(breakdown)}">' + "".join(segments) + "</svg>")
    return f'<td class="num" data-v="{total!r}" title="{_e(breakdown)}">{total:.1f}{bar}</td>'


def _qc_cell(case_id: str, out_dir: Path) -> str:
    href = qc_href(case_id, out_dir)
    if href is None:
        return '<td class="qc"></td>'
    alt = f"QC {case_id}"
    return (f'<td class="qc"><a href="{_e(href)}"><img src="{_e(href)}" width="{THUMB_WIDTH_PX}" '
            f'alt="{_e(alt)}" loading="lazy"></a></td>')


def qc_href(case_id: str, out_dir: Path) -> str | None:
    """The relative link ``qc/<case_id>.png`` when that file exists in ``out_dir``, else None.

    A case id that would leave the qc folder (a separator, a leading dot) gets no link.
    """
    if not case_id or "/" in case_id or "\\" in case_id or case_id.startswith(".") or "\x00" in case_id:
        return None
    path = Path(out_dir) / QC_FOLDER / f"{case_id}.png"
    try:
        if not path.is_file():
            return None
    except OSError:  # a name too long for the file system, for one
        return None
    return f"{QC_FOLDER}/{quote(case_id + '.png', safe='')}"


def tmtv_ml(study: dict) -> float | None:
    """The study's TMTV: ``tmtv_ml``, or ``mask_ml`` in reports older than the PET readout
    (the same quantity: the volume of the mask)."""
    value = _num(study.get("tmtv_ml"))
    return value if value is not None else _num(study.get("mask_ml"))


def study_flags(study: dict) -> list[tuple[str, str, str]]:
    """The flags of one study record: (name, severity "bad"|"warn"|"info", detail).

    Derived from the record only: ``status`` (failed, skipped), ``error``, ``mask_voxels`` (empty
    mask), TMTV (large mask, above ``LARGE_TMTV_ML``), ``inputs.ct_resampled`` or a warning
    about resampling the CT (CT resampled), ``spacing.resampled`` (spacing resampled),
    ``inputs.dicom`` (DICOM, with ``inputs.suv.factor``), and each of ``warnings``.
    """
    flags = []
    status = study.get("status")
    if status == "failed":
        flags.append(("failed", "bad", str(study.get("error") or "no message recorded")))
    elif status == "skipped":
        flags.append(("skipped", "info", "done earlier from the same inputs with this engine and options"))
    voxels = _num(study.get("mask_voxels"))
    if voxels is not None and voxels == 0:
        flags.append(("empty mask", "warn", "no voxel segmented"))
    tmtv = tmtv_ml(study)
    if tmtv is not None and tmtv > LARGE_TMTV_ML:
        flags.append(("large mask", "warn", f"TMTV {tmtv:.0f} mL > {LARGE_TMTV_ML:.0f} mL"))
    if ct_resampled(study):
        flags.append(("CT resampled", "info", "the CT was resampled onto the PET grid"))
    spacing = _dict(study.get("spacing"))
    if spacing.get("resampled") is True:
        native, network = spacing.get("native_spacing_zyx_mm"), spacing.get("network_spacing_zyx_mm")
        detail = (f"{_mm(native)} \u2192 {_mm(network)} mm (z, y, x)" if native and network
                  else "resampled to the networks' spacing")
        flags.append(("spacing resampled", "info", detail))
    inputs = _dict(study.get("inputs"))
    if inputs.get("dicom"):
        factor = _num(_dict(inputs.get("suv")).get("factor"))
        flags.append(("DICOM", "info", f"SUV factor {factor:.6g}" if factor is not None else "DICOM series"))
    warnings = study.get("warnings")
    for warning in warnings if isinstance(warnings, list) else []:
        flags.append(("warning", "warn", str(warning)))
    return flags


def ct_resampled(study: dict) -> bool:
    """Whether the study's CT was resampled onto the PET grid.

    ``inputs.ct_resampled`` where the record has it (l2s-infer records it for NIfTI/MHA and
    DICOM studies); in older reports, which only logged the resampling, a warning that says so.
    """
    value = _dict(study.get("inputs")).get("ct_resampled")
    if isinstance(value, bool):
        return value
    warnings = study.get("warnings")
    return any(re.search(r"\bCT\b", str(w)) and re.search(r"resampl", str(w), re.I)
               for w in (warnings if isinstance(warnings, list) else []))


def _flags_html(study: dict) -> str:
    out = []
    for name, severity, detail in study_flags(study):
        if name in ("failed", "warning"):
            out.append(f'<div><span class="flag {severity}">{_e(name)}</span>'
                       f'<div class="msg">{_e(detail)}</div></div>')
        else:
            out.append(f'<span class="flag {severity}" title="{_e(detail)}">{_e(name)}</span>')
    return "".join(out)


def _options(report: dict) -> str:
    options = _dict(report.get("options"))
    if not options:
        return '<p class="na">No options recorded.</p>'
    items = "".join(f"<div><dt>{_e(k)}</dt><dd>{_e(_json(v))}</dd></div>" for k, v in options.items())
    return f'<dl class="options">{items}</dl>'


# ---------------------------------------------------------------------------------------------
# small helpers


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _num(value) -> float | None:
    """A finite number, or None (missing, null, a string, a bool, NaN)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _num_cell(value, decimals: int) -> str:
    number = _num(value)
    if number is None:
        return '<td class="num" data-v=""><span class="na">\u2013</span></td>'
    return f'<td class="num" data-v="{number!r}">{number:.{decimals}f}</td>'


def _mm(values) -> str:
    if not isinstance(values, (list, tuple)):
        return str(values)
    return " \u00d7 ".join(f"{v:g}" if _num(v) is not None else str(v) for v in values)


def _json(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _csp_hash(source: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(source.encode("utf-8")).digest()).decode("ascii")
