"""Cohorts in parts: two processes at once on one output folder, the merge, and what it refuses.

Reference: one plain run of the same studies with the same engine (masks compared array for
array, lesion rows as sets).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

pytest.importorskip("onnx")

from l2s_engine.cli import infer_main, report_main  # noqa: E402
from l2s_engine.phantoms import make_phantom  # noqa: E402
from l2s_engine.phantoms.files import write_study  # noqa: E402
from l2s_engine.shards import ShardError, part_of  # noqa: E402

from .engines import fast_engine  # noqa: E402


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    return fast_engine(tmp_path_factory.mktemp("fast-engine"), spacing="tiny")


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("cohort")
    for i in range(5):
        write_study(make_phantom(i, seed=5, size="tiny"), root)
    return root


def _args(engine: Path, cohort: Path, out: Path, *extra) -> list[str]:
    return ["--engine", str(engine), str(cohort), "-o", str(out), "-q", "--backend", "onnxruntime", *extra]


def _masks(out: Path) -> dict[str, np.ndarray]:
    return {p.name: sitk.GetArrayFromImage(sitk.ReadImage(str(p))) for p in sorted(out.glob("*.nii.gz"))}


def _lesion_rows(out: Path) -> set[str]:
    return set((out / "lesions.csv").read_text().splitlines())


def test_parts_cover_the_list_once_in_a_fixed_order():
    items = [f"case{i:02d}" for i in (7, 3, 11, 0, 5, 9, 1)]
    parts = [part_of(items, 3, k, key=str) for k in range(3)]
    assert sorted(sum(parts, [])) == sorted(items)
    assert parts[0] == ["case00", "case05", "case11"]  # sorted, then every 3rd from the first
    assert parts == [part_of(list(reversed(items)), 3, k, key=str) for k in range(3)]
    for n, k in ((0, 0), (2, 2), (2, -1)):
        with pytest.raises(ShardError, match="--part-id"):
            part_of(items, n, k, key=str)


def test_two_parts_at_once_equal_one_plain_run(engine, cohort, tmp_path, capsys):
    plain = tmp_path / "plain"
    assert infer_main(_args(engine, cohort, plain)) == 0
    shared = tmp_path / "shared"
    processes = [subprocess.Popen([sys.executable, "-c", "import sys; from l2s_engine.cli import infer_main; "
                                   f"sys.exit(infer_main({_args(engine, cohort, shared, '--num-parts', '2', '--part-id', str(k))!r}))"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for k in range(2)]
    for process in processes:
        out, err = process.communicate(timeout=600)
        assert process.returncode == 0, err
    parts = [json.loads((shared / f"report.part-{k}-of-2.json").read_text()) for k in range(2)]
    assert [len(p["studies"]) for p in parts] == [3, 2]
    assert not (shared / "report.json").exists()  # the parts never write the cohort's report
    capsys.readouterr()
    assert report_main([str(shared)]) == 0
    merged = json.loads((shared / "report.json").read_text())
    ids = [s["case_id"] for s in merged["studies"]]
    assert len(ids) == len(set(ids)) == 5 and merged["complete"] is True and merged["summary"]["ok"] == 5
    assert (shared / "report.html").is_file()
    plain_masks, shared_masks = _masks(plain), _masks(shared)
    assert plain_masks.keys() == shared_masks.keys() and len(plain_masks) == 5
    for name, mask in plain_masks.items():
        np.testing.assert_array_equal(shared_masks[name], mask)
    assert _lesion_rows(shared) == _lesion_rows(plain)
    # a part run again skips what it did
    assert infer_main(_args(engine, cohort, shared, "--num-parts", "2", "--part-id", "1")) == 0
    again = json.loads((shared / "report.part-1-of-2.json").read_text())
    assert [s["status"] for s in again["studies"]] == ["skipped", "skipped"]


def test_missing_and_unfinished_parts_are_named(engine, cohort, tmp_path, capsys):
    out = tmp_path / "out"
    assert infer_main(_args(engine, cohort, out, "--num-parts", "3", "--part-id", "0")) == 0
    assert infer_main(_args(engine, cohort, out, "--num-parts", "3", "--part-id", "2")) == 0
    part2 = out / "report.part-2-of-3.json"
    report = json.loads(part2.read_text())
    report["finished"] = None  # as a part killed after it started leaves it
    part2.write_text(json.dumps(report))
    capsys.readouterr()
    assert report_main([str(out)]) == 1
    err = capsys.readouterr().err
    assert "part 1 of 3 is missing" in err and "--part-id 1" in err and "part 2 of 3 is unfinished" in err
    merged = json.loads((out / "report.json").read_text())
    assert merged["complete"] is False and len(merged["studies"]) == 3  # parts 0 and 2: 2 + 1 of 5


def test_a_part_leaves_other_processes_fresh_temporary_files(engine, cohort, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    fresh, old = out / ".other-part.abc.partial.nii.gz", out / ".killed.def.partial.nii.gz"
    fresh.write_bytes(b"being written by another part")
    old.write_bytes(b"left by a killed process")
    two_hours_ago = time.time() - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))
    assert infer_main(_args(engine, cohort, out, "--num-parts", "2", "--part-id", "0")) == 0
    assert fresh.exists() and not old.exists()


def test_part_arguments_are_checked(engine, cohort, tmp_path, capsys):
    for extra in (["--num-parts", "2"], ["--num-parts", "2", "--part-id", "2"]):
        with pytest.raises(SystemExit) as stop:
            infer_main(_args(engine, cohort, tmp_path / "x", *extra))
        assert stop.value.code == 2
    assert "--part-id" in capsys.readouterr().err
