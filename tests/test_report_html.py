"""report.html: parsed back with html.parser against a hand-built report, and loaded in headless Chromium."""

from __future__ import annotations

import json
import os
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest

from l2s_engine import report_html
from l2s_engine.errors import OutputError
from l2s_engine.qc import write_png
from l2s_engine.cli import report_main
from l2s_engine.report_html import LARGE_TMTV_ML, render_html, write_html

HOSTILE_ERROR = 'StudyError: /data/x.nii.gz: <script>alert("pwned")</script> & <img src=x onerror=alert(1)> failed'
HOSTILE_CASE = 'case&<b>"q\'<b>'  # a legal file name, so it can have a QC picture too
NETWORKS = {"loc2d": [{"precision": "fp32", "file": "loc2d.onnx"}],
            "seg3d": [{"precision": "bf16", "file": "seg3d.onnx", "reason": "passed the gate"}]}


def _study(case_id: str, **fields) -> dict:
    return {"case_id": case_id, "source": f"/data/{case_id}", "status": "ok", "error": None, "warnings": [],
            "outputs": {}, "timings": {}, "work": {}, "spacing": {}, "inputs": {}, "mask_voxels": None,
            "mask_ml": None, "peak_rss_mb": 300.0, "metrics": None, **fields}


def _studies() -> list[dict]:
    """One study per case the page must handle; TMTV, flags and QC known by construction."""
    return [
        _study("PETCT_metrics", mask_voxels=56, mask_ml=123.4, tmtv_ml=123.4, tlg_ml=456.7, lesion_count=3,
               suvmax=12.5, suvmean=4.1, suvpeak=9.9, timings={"read": 0.5, "3d": 10.0, "2d": 1.25, "write": 0.25},
               spacing={"native_spacing_zyx_mm": [3.0, 2.0, 2.0], "network_spacing_zyx_mm": [6.1, 4.2, 4.2],
                        "resampled": True},
               metrics={"case_id": "PETCT_metrics", "dice": 0.8125, "fpv_ml": 1.5, "fnv_ml": 2.25}),
        _study("PETCT_failed", status="failed", error=HOSTILE_ERROR, peak_rss_mb=None, timings={"read": 0.125}),
        _study("PETCT_noqc_empty", mask_voxels=0, mask_ml=0.0, tmtv_ml=0.0, tlg_ml=0.0, lesion_count=0,
               suvmax=None, suvmean=None, suvpeak=None, timings={"read": 0.5, "3d": 4.0},
               outputs={"mask": "/elsewhere/PETCT_noqc_empty.nii.gz", "qc": "/elsewhere/qc/PETCT_noqc_empty.png"}),
        _study("PETCT_dicom", mask_voxels=9000, mask_ml=2500.0, tmtv_ml=2500.0, tlg_ml=9000.0, lesion_count=12,
               suvmax=30.0, timings={"read": 2.0, "3d": 20.0},
               inputs={"dicom": {"pet": {"series_uid": "1.2.3", "files": 4}, "ct": {"series_uid": "1.2.4"}},
                       "suv": {"factor": 0.000125, "method": "QIBA"}, "ct_resampled": True}),
        # a report older than the PET readout: no tmtv_ml, no inputs, no spacing; TMTV is mask_ml
        {"case_id": HOSTILE_CASE, "status": "ok", "mask_voxels": 5, "mask_ml": 7.5,
         "warnings": ["/data/old/CT.nii.gz: CT grid differs from the PET grid (spacing); resampling CT onto "
                      "the PET grid"]},
        _study("PETCT_skipped", status="skipped", peak_rss_mb=None),
    ]


# TMTV (mL) by case, None where the page has none (the failed and skipped studies)
TMTV = {"PETCT_metrics": 123.4, "PETCT_failed": None, "PETCT_noqc_empty": 0.0, "PETCT_dicom": 2500.0,
        HOSTILE_CASE: 7.5, "PETCT_skipped": None}
QC_FILES = ("PETCT_metrics", "PETCT_failed", "PETCT_dicom", HOSTILE_CASE, "PETCT_skipped")
# shown: a failed study's picture is of an earlier run (l2s-infer keeps a vouched earlier result)
WITH_QC = ("PETCT_metrics", "PETCT_dicom", HOSTILE_CASE, "PETCT_skipped")
EXPECTED_FLAGS = {
    "PETCT_metrics": {"spacing resampled"},
    "PETCT_failed": {"failed"},
    "PETCT_noqc_empty": {"empty mask"},
    "PETCT_dicom": {"large mask", "DICOM", "CT resampled"},
    HOSTILE_CASE: {"CT resampled", "warning"},
    "PETCT_skipped": {"skipped"},
}


def _report(studies=None) -> dict:
    studies = _studies() if studies is None else studies
    return {"l2s_engine": "9.8.7", "python": "3.11.7", "numpy": "2.4.6", "SimpleITK": "2.5.7", "pydicom": "3.0.2",
            "highdicom": None,
            "backend": {"name": "openvino", "version": "2026.4.1", "precision": "auto", "device": None,
                        "networks": NETWORKS, "cpu": "AMD EPYC", "cpu_bf16": "AVX512-BF16"},
            "options": {"backend": "openvino", "batch_2d": 16, "tta": False, "cache_dir": None},
            "inputs": ["/data/studies"], "wall_seconds": 42.5,
            "summary": {"studies": len(studies), "ok": 4, "failed": 1, "skipped": 1,
                        "mean_seconds": {"read": 0.75, "2d": 0.5, "3d": 11.0, "write": 0.125, "zz-extra": 0.0625},
                        "peak_rss_mb": 300.0},
            "studies": studies}


def _qc_png(path: Path, width: int = 6) -> Path:
    image = np.zeros((8, width, 3), np.uint8)
    image[2:5, 1:3] = (220, 20, 20)
    return write_png(path, image)


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """An output folder as l2s-infer leaves it: report.json and the QC pictures that exist."""
    out = tmp_path / "out"
    for case_id in QC_FILES:
        _qc_png(out / "qc" / f"{case_id}.png")
    (out / "report.json").write_text(json.dumps(_report(), indent=2))
    return out


class Page(HTMLParser):
    """What the tests read back: rows of the studies table, every link, script and svg element."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.rows: list[dict] = []   # per row: case (tr data-case), cells [(attrs, text)], flags, links
        self.links: list[str] = []   # every src and href
        self.scripts = 0
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self._stack: list[str] = []
        self._in_studies = self._in_body = False
        self._cell: list | None = None
        self._flag: list | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        self.links += [v for k, v in attrs.items() if k in ("src", "href") and v is not None]
        self.scripts += tag == "script"
        if tag == "table" and "studies" in (attrs.get("class") or "").split():
            self._in_studies = True
        elif tag == "tbody" and self._in_studies:
            self._in_body = True
        elif tag == "tr" and self._in_body:
            self.rows.append({"case": attrs.get("data-case"), "cells": [], "flags": [], "links": []})
        elif tag == "td" and self._in_body:
            self._cell = [attrs, ""]
            self.rows[-1]["cells"].append(self._cell)
        elif tag == "span" and self._in_body and "flag" in (attrs.get("class") or "").split():
            self._flag = [""]
        if self._in_body and tag in ("a", "img"):
            self.rows[-1]["links"].append(attrs.get("href") or attrs.get("src"))

    def handle_endtag(self, tag):
        if tag == "table":
            self._in_studies = self._in_body = False
        elif tag == "td":
            self._cell = None
        elif tag == "span" and self._flag is not None:
            self.rows[-1]["flags"].append(self._flag[0])
            self._flag = None

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell[1] += data
        if self._flag is not None:
            self._flag[0] += data

    def column(self, header_index: int) -> list[tuple[dict, str]]:
        return [(row["cells"][header_index][0], row["cells"][header_index][1]) for row in self.rows]


COL = {"qc": 0, "case": 1, "status": 2, "tmtv": 3, "tlg": 4, "lesions": 5, "suvmax": 6, "dice": 7, "fpv": 8,
       "fnv": 9, "time": 10, "flags": 11}


def _render(run_dir: Path, **kwargs) -> Page:
    return Page(render_html(_report(), run_dir, **kwargs))


def test_one_row_per_study_in_report_order(run_dir):
    page = _render(run_dir)
    assert [row["case"] for row in page.rows] == list(TMTV)
    assert [text for _, text in page.column(COL["case"])] == list(TMTV)
    assert [text for _, text in page.column(COL["status"])] == ["ok", "failed", "ok", "ok", "ok", "skipped"]


def test_numbers_and_missing_values(run_dir):
    page = _render(run_dir)
    rows = {row["case"]: [text for _, text in row["cells"]] for row in page.rows}
    assert rows["PETCT_metrics"][COL["tmtv"]:COL["fnv"] + 1] == ["123.4", "456.7", "3", "12.50", "0.812", "1.50",
                                                                 "2.25"]
    assert rows[HOSTILE_CASE][COL["tmtv"]] == "7.5"  # mask_ml where the report predates tmtv_ml
    assert rows["PETCT_noqc_empty"][COL["suvmax"]] == "\u2013"
    # sort keys: the exact number, or "" (missing) for the failed and skipped studies
    keys = {row["case"]: row["cells"][COL["tmtv"]][0]["data-v"] for row in page.rows}
    assert {k: (float(v) if v else None) for k, v in keys.items()} == TMTV
    # stage seconds: the sum of the study's timings (0.5 + 10 + 1.25 + 0.25), to one decimal
    times = {row["case"]: row["cells"][COL["time"]] for row in page.rows}
    assert times["PETCT_metrics"][1].startswith("12.0read") and float(times["PETCT_metrics"][0]["data-v"]) == 12.0
    assert "3d 10.00 s" in times["PETCT_metrics"][0]["title"]
    assert times["PETCT_skipped"][0]["data-v"] == ""


def test_flags_derived_from_record_fields(run_dir):
    page = _render(run_dir)
    assert {row["case"]: set(row["flags"]) for row in page.rows} == EXPECTED_FLAGS
    assert report_html.study_flags({"case_id": "x", "status": "ok", "tmtv_ml": LARGE_TMTV_ML})[:1] == []
    flags = report_html.study_flags({"case_id": "x", "status": "ok", "mask_ml": LARGE_TMTV_ML + 0.1})
    assert [f[0] for f in flags] == ["large mask"]
    # a spacing record without the resampled field, and one saying False: no flag
    assert report_html.study_flags({"case_id": "x", "spacing": {"resampled": False}}) == []


def test_hostile_strings_are_escaped(run_dir):
    text = render_html(_report(), run_dir)
    page = Page(text)
    assert page.scripts == 1  # only the page's own sorting script
    assert "<script>alert" not in text and "<img src=x" not in text and "<b>\"q" not in text
    assert "&amp; &lt;img src=x onerror=alert(1)&gt;" in text
    # and they read back exactly: escaped, not mangled
    failed = next(row for row in page.rows if row["case"] == "PETCT_failed")
    assert HOSTILE_ERROR in failed["cells"][COL["flags"]][1]
    hostile = next(row for row in page.rows if row["case"] == HOSTILE_CASE)
    assert hostile["cells"][COL["case"]][1] == HOSTILE_CASE
    assert not [t for t, a in page.tags if any(k.startswith("on") for k in a)]  # no event handler attributes


def test_links_are_relative_to_existing_qc_pictures(run_dir):
    page = _render(run_dir)
    assert page.links, "the QC thumbnails link to their pictures"
    for link in page.links:
        assert not link.startswith(("http:", "https:", "//", "/", "file:")) and ":" not in link, link
        target = (run_dir / unquote(link)).resolve()
        assert target.parent == (run_dir / "qc").resolve() and target.is_file(), link
    by_case = {row["case"]: row["links"] for row in page.rows}
    for case_id in TMTV:
        if case_id in WITH_QC:
            assert [unquote(link) for link in by_case[case_id]] == [f"qc/{case_id}.png"] * 2  # <a href> and <img>
        else:  # none there (though the record names one), or a failed study's: an empty cell
            assert by_case[case_id] == []
            assert next(r for r in page.rows if r["case"] == case_id)["cells"][COL["qc"]][1] == ""
    imgs = [a for t, a in page.tags if t == "img"]
    assert len(imgs) == len(WITH_QC) and all(a["width"] == str(report_html.THUMB_WIDTH_PX) for a in imgs)


def test_qc_link_never_leaves_the_qc_folder(tmp_path):
    _qc_png(tmp_path / "escape.png")
    (tmp_path / "qc").mkdir()
    assert report_html.qc_href("../escape", tmp_path) is None
    assert report_html.qc_href(".hidden", tmp_path) is None
    assert report_html.qc_href("", tmp_path) is None
    _qc_png(tmp_path / "qc" / "a b#c%.png")
    assert report_html.qc_href("a b#c%", tmp_path) == "qc/a%20b%23c%25.png"


def test_no_network_references_and_a_strict_content_security_policy(run_dir):
    text = render_html(_report(), run_dir)
    page = Page(text)
    assert not [t for t, a in page.tags if t == "link" or (t == "script" and "src" in a)]
    assert "@import" not in text and "url(" not in text
    (csp,) = [a["content"] for t, a in page.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"]
    assert "default-src 'none'" in csp and "'unsafe-inline'" not in csp and "script-src 'sha256-" in csp


def test_header_names_engine_backend_networks_packages_date_and_options(run_dir):
    page = _render(run_dir, generated=0.0)
    text = " ".join(page.text)
    assert "l2s-engine 9.8.7" in text and "openvino 2026.4.1" in text
    assert "loc2d: fp32 (loc2d.onnx)" in text and "seg3d: bf16 (seg3d.onnx)" in text
    assert "numpy 2.4.6" in text and "SimpleITK 2.5.7" in text and "highdicom not installed" in text
    assert "1970-01-01" in text or "1969-12-31" in text  # the caller's date (an mtime), in local time
    assert "batch_2d" in text and "cache_dir" in text
    dated = Page(render_html({**_report(), "finished": "2031-02-03T04:05:06+01:00"}, run_dir, generated=0.0))
    assert "2031-02-03T04:05:06+01:00" in " ".join(dated.text) and "1970" not in " ".join(dated.text)


def test_stage_chart_has_a_bar_per_stage_and_labelled_axes(run_dir):
    page = _render(run_dir)
    text = " ".join(page.text)
    svg_rects = [a for t, a in page.tags if t == "rect"]
    # the chart's 5 stages + the per-study bars' segments (4 + 1 + 2 + 2 + 0 + 0 stages)
    assert len(svg_rects) == 5 + 9
    for stage, seconds in (("read", "0.75"), ("3d", "11.00"), ("zz-extra", "0.0625")):
        assert f"{stage}: {seconds} s" in text
    assert "mean time per study (s)" in text and "stage" in text
    # the longest bar is 3d; its width against the read bar's is 11 / 0.75
    bars = [a for t, a in page.tags if t == "rect" and a.get("height") == "18"]
    widths = [float(a["width"]) for a in bars]
    assert widths[2] / widths[0] == pytest.approx(11.0 / 0.75, rel=1e-2)


def test_missing_optional_keys_render(tmp_path):
    """A report with nothing but studies, some of them bare: no summary, backend, options."""
    studies = [{"case_id": "a", "status": "ok", "timings": {"read": 1.0, "3d": 3.0}},
               {"case_id": "b", "status": "ok", "timings": {"read": 2.0, "3d": 5.0}, "metrics": None},
               {"case_id": "c"}]
    page = Page(render_html({"studies": studies}, tmp_path))
    assert [r["case"] for r in page.rows] == ["a", "b", "c"]
    text = " ".join(page.text)
    assert "3d: 4.00 s" in text and "read: 1.50 s" in text  # the mean over the ok studies
    assert "unknown" in text  # no date given and none in the report
    assert Page(render_html({"studies": []}, tmp_path)).rows == []


def test_write_html_is_atomic_and_replaces_the_page(run_dir, monkeypatch):
    page_path = run_dir / "report.html"
    page_path.write_text("old page")
    written = []
    real = report_html.write_text_atomic
    monkeypatch.setattr(report_html, "write_text_atomic", lambda path, text: written.append(path) or real(path, text))
    assert write_html(run_dir) == page_path and written == [page_path]
    assert len(Page(page_path.read_text(encoding="utf-8")).rows) == len(TMTV)
    assert sorted(p.name for p in run_dir.iterdir()) == ["qc", "report.html", "report.json"]  # no temporary left
    # the date is report.json's mtime when the report does not say
    os.utime(run_dir / "report.json", (0, 0))
    write_html(run_dir)
    assert "1970-01-01" in page_path.read_text() or "1969-12-31" in page_path.read_text()

    def broken(*args, **kwargs):
        raise RuntimeError("render failed")

    monkeypatch.setattr(report_html, "render_html", broken)
    with pytest.raises(RuntimeError):
        write_html(run_dir)
    assert len(Page(page_path.read_text(encoding="utf-8")).rows) == len(TMTV)  # the previous page is kept


def test_missing_or_damaged_report_is_an_output_error(tmp_path, capsys):
    with pytest.raises(OutputError, match="report.json.*l2s-infer") as caught:
        write_html(tmp_path)
    assert str(tmp_path / "report.json") in str(caught.value)
    (tmp_path / "report.json").write_text("{not json")
    with pytest.raises(OutputError, match="not valid JSON"):
        write_html(tmp_path)
    (tmp_path / "report.json").write_text("[1, 2]")
    with pytest.raises(OutputError, match="not an l2s-infer report"):
        write_html(tmp_path)
    assert not (tmp_path / "report.html").exists()
    assert report_main([str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("l2s-report: ") and err.count("\n") == 1 and "report.json" in err


def test_report_main_prints_the_page(run_dir, capsys):
    assert report_main([str(run_dir)]) == 0
    assert capsys.readouterr().out.strip() == str(run_dir / "report.html")
    assert (run_dir / "report.html").is_file()


def test_report_name_matches_the_scheduler():
    from l2s_engine.run_report import REPORT

    assert report_html.REPORT == REPORT


# ---------------------------------------------------------------------------------------------
# in a real browser


@pytest.fixture(scope="module")
def chromium():
    from browser import find_chromium

    binary = find_chromium()
    if binary is None:
        pytest.skip("no Chromium binary (apt-get install chromium, or CHROMIUM=/path/to/it): the page is "
                    "checked in a real browser only where one is installed")
    return binary


_ORDER = "Array.from(document.querySelectorAll('table.studies tbody tr')).map(function (r) { return r.dataset.case; })"


def test_page_in_headless_chromium(run_dir, chromium):
    from browser import Browser

    page_path = write_html(run_dir)
    started = time.perf_counter()
    with Browser(chromium, width=1200, height=2000) as browser:
        page = browser.open(page_path)
        images = page.images_loaded()
        assert page.evaluate(_ORDER) == list(TMTV)  # one row per study, in report order
        assert len(images) == len(WITH_QC)
        assert all(i["complete"] and i["naturalWidth"] == 6 for i in images), images  # the 6-pixel-wide PNGs
        assert page.evaluate("Array.from(document.images).map(function (i) { return i.width; })") == \
            [report_html.THUMB_WIDTH_PX] * len(WITH_QC)  # shown at the fixed width
        # every request stayed inside the output folder
        assert all(u.startswith(run_dir.resolve().as_uri() + "/") for u in page.requests()), page.requests()

        missing_last = sorted((c for c in TMTV if TMTV[c] is not None), key=lambda c: TMTV[c])
        nones = [c for c in TMTV if TMTV[c] is None]  # in report order: the sort is stable
        page.click("th[data-key=tmtv] button")
        assert page.evaluate(_ORDER) == missing_last + nones
        assert page.evaluate("document.querySelector('th[data-key=tmtv]').getAttribute('aria-sort')") == "ascending"
        page.click("th[data-key=tmtv] button")
        assert page.evaluate(_ORDER) == missing_last[::-1] + nones  # descending, missing values still last
        page.click("th[data-key=case] button")
        assert page.evaluate(_ORDER) == sorted(TMTV, key=str.lower)
        assert page.problems() == []
    assert time.perf_counter() - started < 60


def test_content_security_policy_is_enforced(tmp_path, chromium):
    """A script that escaped escaping would not run: the policy admits only the page's own."""
    from browser import Browser

    (tmp_path / "report.json").write_text(json.dumps(_report([_study("a", mask_ml=1.0)])))
    page_path = write_html(tmp_path)
    text = page_path.read_text(encoding="utf-8")
    page_path.write_text(text.replace("<body>", "<body><script>document.title = 'injected';</script>", 1))
    with Browser(chromium) as browser:
        page = browser.open(page_path)
        assert page.evaluate("document.title") != "injected"
        assert any("Content Security Policy" in p for p in page.problems()), page.problems()
        assert page.evaluate(_ORDER) == ["a"]  # and the page's own script still ran: sorting works
        page.click("th[data-key=tmtv] button")
        assert page.evaluate("document.querySelector('th[data-key=tmtv]').getAttribute('aria-sort')") == "ascending"


def test_browser_checks_see_a_missing_picture_and_a_script_error(run_dir, chromium, monkeypatch):
    """The checks above can fail: a picture gone after the page was written, a script error."""
    from browser import Browser

    monkeypatch.setattr(report_html, "_SCRIPT", "console.error('seen'); document.querySelector('#none').click();")
    page_path = write_html(run_dir)  # the policy admits the script by its hash, so it runs
    (run_dir / "qc" / "PETCT_dicom.png").unlink()
    with Browser(chromium) as browser:
        page = browser.open(page_path)
        broken = [i["src"] for i in page.images_loaded() if i["naturalWidth"] == 0]
        problems = page.problems()
    assert broken == ["qc/PETCT_dicom.png"]
    assert any("request failed" in p and "FILE_NOT_FOUND" in p for p in problems), problems
    assert "console: seen" in problems and any(p.startswith("exception: TypeError") for p in problems), problems


def test_screenshot(run_dir, chromium, tmp_path):
    from browser import screenshot

    png = screenshot(write_html(run_dir), tmp_path / "shot.png", width=900)
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width >= 900 and height > 600  # the whole page, not the window
