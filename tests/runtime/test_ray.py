"""l2s-infer --ray local: the same masks as a plain run, a worker killed mid-study, Ray missing.

Reference: one plain (single-process) run of the same studies with the same engine.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

pytest.importorskip("onnx")

from l2s_engine.cli import infer_main  # noqa: E402
from l2s_engine.phantoms import make_phantom  # noqa: E402
from l2s_engine.phantoms.files import write_study  # noqa: E402

from .engines import fast_engine  # noqa: E402


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    return fast_engine(tmp_path_factory.mktemp("fast-engine"), spacing="small")


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("cohort")
    for i in range(6):
        write_study(make_phantom(i, seed=7, size="small"), root)
    return root


@pytest.fixture(scope="module")
def plain(engine, cohort, tmp_path_factory):
    out = tmp_path_factory.mktemp("plain")
    assert infer_main(_args(engine, cohort, out)) == 0
    return out


def _args(engine: Path, cohort: Path, out: Path, *extra) -> list[str]:
    return ["--engine", str(engine), str(cohort), "-o", str(out), "-q", "--backend", "onnxruntime", *extra]


def _masks(out: Path) -> dict[str, np.ndarray]:
    return {p.name: sitk.GetArrayFromImage(sitk.ReadImage(str(p))) for p in sorted(out.glob("*.nii.gz"))}


def _same_outputs(out: Path, plain: Path) -> None:
    mine, theirs = _masks(out), _masks(plain)
    assert mine.keys() == theirs.keys() and len(mine) == 6
    for name, mask in theirs.items():
        np.testing.assert_array_equal(mine[name], mask)
    assert set((out / "lesions.csv").read_text().splitlines()) == set((plain / "lesions.csv").read_text().splitlines())


def _worker_pids(running_only: bool) -> list[int]:
    """Ray names its actor processes ``ray::StudyWorker`` (``.run_study`` while one runs)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if title.startswith("ray::StudyWorker") and (not running_only or "run_study" in title):
                pids.append(int(entry.name))
    return pids


def test_two_single_thread_workers_give_the_plain_masks(engine, cohort, plain, tmp_path):
    pytest.importorskip("ray")
    out = tmp_path / "out"
    assert infer_main(_args(engine, cohort, out, "--ray", "local", "--ray-workers", "2", "--threads", "1")) == 0
    report = json.loads((out / "report.json").read_text())
    assert [s["status"] for s in report["studies"]] == ["ok"] * 6
    assert report["backend"]["executor"].startswith("ray (2 workers x 1 CPU")
    _same_outputs(out, plain)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the worker processes in /proc")
def test_a_worker_killed_mid_study_costs_a_retry_only(engine, cohort, plain, tmp_path):
    pytest.importorskip("ray")
    out = tmp_path / "out"
    killed: list[int] = []

    def killer():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            busy = _worker_pids(running_only=True)
            if busy:
                os.kill(busy[0], signal.SIGKILL)
                killed.append(busy[0])
            time.sleep(0.01)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    code = infer_main(_args(engine, cohort, out, "--ray", "local", "--ray-workers", "2", "--threads", "1"))
    thread.join(timeout=1)
    assert killed, "no worker was caught running a study"
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert len({s["case_id"] for s in report["studies"]}) == len(report["studies"]) == 6
    # "skipped": the worker died after publishing the study, and the retry found it done
    assert {s["status"] for s in report["studies"]} <= {"ok", "skipped"}
    _same_outputs(out, plain)
    records = sorted(p.name for p in (out / "provenance").glob("*.json"))
    assert len(records) == 6


def test_ray_missing_is_one_line_naming_the_extra(engine, cohort, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    assert infer_main(_args(engine, cohort, tmp_path / "out", "--ray", "local")) == 2
    assert "l2s-engine[ray]" in capsys.readouterr().err
