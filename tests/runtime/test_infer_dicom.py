"""l2s-infer on DICOM studies: mask + SEG, SUV in the report, resume, refusals, formats.

References: the SEG's frames are mapped to slices through their referenced SOP instances and
SimpleITK's (GDCM's) slice sort, and compared with the NIfTI mask read by SimpleITK; SUV
factors are computed here from the tags the phantom writer put in.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

pytest.importorskip("onnx")

from l2s_engine.cli import infer_main  # noqa: E402
from l2s_engine.phantoms import make_phantom  # noqa: E402
from l2s_engine.phantoms.dicom import write_dicom_study  # noqa: E402
from l2s_engine.phantoms.files import write_study  # noqa: E402

from .engines import fast_engine  # noqa: E402

WEIGHT, DOSE, UPTAKE, HALF_LIFE = 74.0, 3.2e8, 3725.0, 6586.2  # the phantom writer's defaults


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    return fast_engine(tmp_path_factory.mktemp("fast-engine"), spacing="tiny")


def _run(engine: Path, inputs: list[Path], out: Path, *extra: str) -> int:
    return infer_main(["--engine", str(engine), *map(str, inputs), "-o", str(out), "-q", "--backend", "onnxruntime",
                       *extra])


def _report(out: Path) -> dict:
    return {s["case_id"]: s for s in json.loads((out / "report.json").read_text())["studies"]}


def _seg_volume(seg_path: Path, pt_folder: Path, shape) -> np.ndarray:
    """The SEG's frames placed at the z of the PT file each references (GDCM's slice order)."""
    order = {pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID: z
             for z, f in enumerate(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(pt_folder)))}
    seg = pydicom.dcmread(seg_path)
    frames = seg.pixel_array.reshape(-1, *shape[1:])
    volume = np.zeros(shape, np.uint8)
    for frame, groups in zip(frames, seg.PerFrameFunctionalGroupsSequence):
        uid = groups.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        volume[order[uid]] |= frame.astype(np.uint8)
    return volume


def test_dicom_study_gets_mask_and_seg_voxel_for_voxel(engine, tmp_path):
    folder = write_dicom_study(make_phantom(0, 3, "tiny"), tmp_path / "in")
    out = tmp_path / "out"
    assert _run(engine, [tmp_path / "in"], out) == 0
    (case, record), = _report(out).items()
    assert record["status"] == "ok" and set(record["outputs"]) == {"mask", "seg"}
    mask = sitk.GetArrayFromImage(sitk.ReadImage(record["outputs"]["mask"]))
    assert mask.sum() > 0
    np.testing.assert_array_equal(_seg_volume(Path(record["outputs"]["seg"]), folder / "PT", mask.shape), mask)
    # the mask lies on the PET series' grid as GDCM reads it
    peer = sitk.ImageSeriesReader()
    peer.SetFileNames(peer.GetGDCMSeriesFileNames(str(folder / "PT")))
    pet = peer.Execute()
    written = sitk.ReadImage(record["outputs"]["mask"])
    np.testing.assert_allclose(written.GetOrigin(), pet.GetOrigin(), atol=1e-3)
    np.testing.assert_allclose(written.GetSpacing(), pet.GetSpacing(), atol=1e-4)
    suv = record["inputs"]["suv"]
    factor = WEIGHT * 1000.0 / (DOSE * 0.5 ** (UPTAKE / HALF_LIFE))
    assert suv["factor"] == pytest.approx(factor, rel=1e-9) and suv["method"] == "BQML"
    # the autoPET script reads the first file listed (IM000000: the lowest slice, whose bed
    # position was acquired 120 s after the series start) and takes its AcquisitionTime
    assert suv["autopet_difference"] == pytest.approx(2.0 ** (120.0 / HALF_LIFE) - 1.0, rel=1e-6)
    assert record["inputs"]["dicom"]["pet"]["files"] == 64
    assert record["inputs"]["ct_resampled"] is False  # the phantom writer's CT lies on the PET grid


def test_resume_skips_and_a_touched_slice_redoes(engine, tmp_path):
    folder = write_dicom_study(make_phantom(1, 3, "tiny"), tmp_path / "in")
    out = tmp_path / "out"
    assert _run(engine, [tmp_path / "in"], out) == 0
    assert _run(engine, [tmp_path / "in"], out) == 0
    assert [r["status"] for r in _report(out).values()] == ["skipped"]
    victim = sorted((folder / "PT").iterdir())[10]
    os.utime(victim, ns=(victim.stat().st_atime_ns, victim.stat().st_mtime_ns + 10**9))
    assert _run(engine, [tmp_path / "in"], out) == 0
    assert [r["status"] for r in _report(out).values()] == ["ok"]


def test_untrustworthy_suv_fails_that_study_only(engine, tmp_path, capsys):
    bad = write_dicom_study(make_phantom(0, 3, "tiny"), tmp_path / "in")
    write_study(make_phantom(1, 3, "tiny"), tmp_path / "in")
    for f in (bad / "PT").iterdir():
        ds = pydicom.dcmread(f)
        ds.DecayCorrection = "ADMIN"
        ds.save_as(f)
    out = tmp_path / "out"
    assert _run(engine, [tmp_path / "in"], out) == 1
    err = capsys.readouterr().err
    records = _report(out)
    failed = [c for c, r in records.items() if r["status"] == "failed"]
    assert len(failed) == 1 and "DecayCorrection" in records[failed[0]]["error"] and "ADMIN" in err
    assert not list(out.glob(f"{failed[0]}*"))
    assert sum(r["status"] == "ok" for r in records.values()) == 1


def test_dicom_seg_format_alone_and_a_nifti_study_it_cannot_serve(engine, tmp_path):
    write_dicom_study(make_phantom(0, 3, "tiny"), tmp_path / "in")
    write_study(make_phantom(1, 3, "tiny"), tmp_path / "in")
    out = tmp_path / "out"
    assert _run(engine, [tmp_path / "in"], out, "--format", "dicom-seg") == 1
    records = _report(out)
    dicom = next(r for r in records.values() if "dicom" in r["inputs"])
    nifti = next(r for r in records.values() if "dicom" not in r["inputs"])
    assert dicom["status"] == "ok" and set(dicom["outputs"]) == {"seg"}
    assert nifti["status"] == "failed" and "--format nii.gz" in nifti["error"]
    assert sorted(p.name for p in out.iterdir() if p.is_file()) == [f"{dicom['case_id']}_seg.dcm", "lesions.csv", "report.html",
                                                                   "report.json"]
