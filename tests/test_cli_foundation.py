import csv

import numpy as np
import pytest
import SimpleITK as sitk

from l2s_engine.cli import eval_main, phantoms_main
from l2s_engine.io import find_studies, load_study, write_mask
from l2s_engine.phantoms import make_phantom


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("phantoms")
    assert phantoms_main([str(out), "-n", "4", "--size", "tiny", "--seed", "3", "--mip"]) == 0
    return out


def test_written_studies_load_back_as_generated(tiny_set):
    refs = find_studies([tiny_set])
    assert len(refs) == 4 and all(r.layout == "autopet" and r.seg is not None for r in refs)
    generated = {make_phantom(i, seed=3, size="tiny").case_id: make_phantom(i, seed=3, size="tiny") for i in range(4)}
    for ref in refs:
        study = load_study(ref)
        phantom = generated[ref.folder.parent.name]
        assert ref.folder.name == phantom.study_name
        np.testing.assert_array_equal(study.pet, phantom.pet)
        np.testing.assert_array_equal(study.ct, phantom.ct.astype(np.float32))
        np.testing.assert_array_equal(study.seg, phantom.seg)
        assert sitk.ReadImage(str(ref.ct)).GetPixelID() == sitk.sitkInt16
    assert len(list(tiny_set.glob("*_mip.png"))) == 4


def test_grand_challenge_layout(tmp_path):
    assert phantoms_main([str(tmp_path), "-n", "2", "--size", "tiny", "--layout", "grand-challenge"]) == 0
    refs = find_studies([tmp_path])
    assert [r.layout for r in refs] == ["grand-challenge"] * 2
    assert all(r.pet.suffix == ".mha" and r.problem is None for r in refs)
    first = make_phantom(0, 0, "tiny")
    (ref,) = [r for r in refs if r.folder.name == first.case_id]
    np.testing.assert_array_equal(load_study(ref).pet, first.pet)


def test_eval_perfect_empty_and_missing_predictions(tiny_set, tmp_path, capsys):
    studies = [load_study(r) for r in find_studies([tiny_set])]
    positive = [s for s in studies if s.seg.any()]
    assert len(positive) == 2
    pred = tmp_path / "pred"
    for s in studies:
        mask = np.zeros_like(s.seg) if s is positive[0] else s.seg
        write_mask(mask, s.geometry, pred / f"{s.case_id}.nii.gz")
    csv_path = tmp_path / "m.csv"
    assert eval_main([str(pred), str(tiny_set), "-o", str(csv_path)]) == 0
    rows = {r["case_id"]: r for r in csv.DictReader(csv_path.open())}
    assert set(rows) == {s.case_id for s in studies}
    missed = rows[positive[0].case_id]
    vv = float(np.prod(positive[0].geometry.spacing)) / 1000
    assert float(missed["dice"]) == 0.0
    assert float(missed["fnv_ml"]) == pytest.approx(positive[0].seg.sum() * vv, rel=1e-6)
    assert float(rows[positive[1].case_id]["dice"]) == 1.0
    negatives = [rows[s.case_id] for s in studies if not s.seg.any()]
    assert all(r["dice"] == "nan" and float(r["fpv_ml"]) == 0.0 for r in negatives)
    out = capsys.readouterr().out
    assert "positive-only: Dice 0.5000" in out and "all-cases: Dice 0.2500" in out
    (pred / f"{studies[0].case_id}.nii.gz").unlink()
    assert eval_main([str(pred), str(tiny_set), "-o", str(csv_path)]) == 1
    assert "no prediction" in capsys.readouterr().err
    assert eval_main([str(tmp_path / "nowhere"), str(tiny_set)]) == 2
