"""The PET readout in l2s-infer's outputs: report.json per study, lesions.csv, kept on resume.

References: the written mask (SimpleITK) and the phantom's SUV, with numpy sums and scipy's
18-connected labelling (a peer of cc3d).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

pytest.importorskip("onnx")
ndimage = pytest.importorskip("scipy.ndimage")

from l2s_engine.cli import infer_main  # noqa: E402
from l2s_engine.phantoms import make_phantom  # noqa: E402
from l2s_engine.phantoms.files import write_study  # noqa: E402

from .engines import fast_engine  # noqa: E402


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    return fast_engine(tmp_path_factory.mktemp("fast-engine"), spacing="tiny")


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_report_and_lesions_csv_match_numpy_and_survive_a_resume(engine, tmp_path):
    phantoms = [make_phantom(i, seed=3, size="tiny") for i in range(3)]
    folders = [write_study(p, tmp_path / "in") for p in phantoms]
    (folders[2] / "CTres.nii.gz").unlink()  # one study fails: no rows, no numbers
    out = tmp_path / "out"
    args = ["--engine", str(engine), str(tmp_path / "in"), "-o", str(out), "-q", "--backend", "onnxruntime"]
    assert infer_main(args) == 1
    report = {s["case_id"]: s for s in json.loads((out / "report.json").read_text())["studies"]}
    rows = _rows(out / "lesions.csv")
    eighteen = ndimage.generate_binary_structure(3, 2)  # faces and edges: 18-connectivity
    checked = 0
    for phantom, folder in zip(phantoms, folders):
        record = next(r for c, r in report.items() if c.startswith(folder.parent.name))
        if record["status"] == "failed":
            assert record["tmtv_ml"] is None and not [r for r in rows if r["study"] == record["case_id"]]
            continue
        mask = sitk.GetArrayFromImage(sitk.ReadImage(record["outputs"]["mask"])).astype(bool)
        suv = phantom.pet.astype(np.float64)
        voxel_ml = float(np.prod(phantom.geometry.spacing)) / 1000.0
        _, count = ndimage.label(mask, structure=eighteen)
        assert record["lesion_count"] == count
        assert record["tmtv_ml"] == pytest.approx(mask.sum() * voxel_ml, rel=1e-6)  # NIfTI keeps float32 spacings
        assert record["tlg_ml"] == pytest.approx(suv[mask].sum() * voxel_ml, rel=1e-5)
        mine = [r for r in rows if r["study"] == record["case_id"]]
        assert len(mine) == count
        if count:
            checked += 1
            assert record["suvmax"] == pytest.approx(suv[mask].max(), rel=1e-6)
            assert record["suvmean"] == pytest.approx(suv[mask].mean(), rel=1e-5)
            assert sum(float(r["volume_ml"]) for r in mine) == pytest.approx(record["tmtv_ml"], rel=1e-5)
            assert max(float(r["suvmax"]) for r in mine) == pytest.approx(record["suvmax"], rel=1e-5)
            assert sum(int(r["voxels"]) for r in mine) == mask.sum()
    assert checked >= 1  # the fast engine marks the phantoms' hot spots
    before = (out / "lesions.csv").read_text()
    assert infer_main(args) == 1  # the same failure again; the two done studies are skipped
    again = {s["case_id"]: s for s in json.loads((out / "report.json").read_text())["studies"]}
    assert sorted(r["status"] for r in again.values()) == ["failed", "skipped", "skipped"]
    for case, record in again.items():
        if record["status"] == "skipped":
            assert record["tmtv_ml"] == report[case]["tmtv_ml"] and record["lesion_count"] == report[case]["lesion_count"]
    assert (out / "lesions.csv").read_text() == before
