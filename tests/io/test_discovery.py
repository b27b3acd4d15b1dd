from pathlib import Path

import numpy as np
import pytest
from conftest import make_autopet_study, write_volume

from l2s_engine.errors import AmbiguousStudyError, MissingImageError
from l2s_engine.io import InputPathError, find_studies, sanitize_case_id


def _touch_image(path: Path) -> Path:
    return write_volume(path, np.zeros((3, 3, 3), np.float32))


def test_autopet_layout_ids_and_files(tmp_path):
    a = make_autopet_study(tmp_path / "PETCT_0011" / "08-12-2005-NA-PET-CT Ganzkoerper  primaer mit KM-96698")
    b = make_autopet_study(tmp_path / "PETCT_0011" / "09-01-2006-NA-PET-CT-2", seg=False)
    refs = find_studies([tmp_path])
    assert [r.case_id for r in refs] == [
        "PETCT_0011_08-12-2005-NA-PET-CT_Ganzkoerper_primaer_mit_KM-96698", "PETCT_0011_09-01-2006-NA-PET-CT-2"]
    assert refs[0].pet == a / "SUV.nii.gz" and refs[0].ct == a / "CTres.nii.gz" and refs[0].seg == a / "SEG.nii.gz"
    assert refs[1].seg is None and refs[1].ct == b / "CTres.nii.gz"
    assert all(r.layout == "autopet" and r.problem is None for r in refs)


def test_autopet_prefers_ctres_and_takes_ct_when_alone(tmp_path):
    for name in ("SUV.mha", "CT.nrrd", "CTres.nii"):
        _touch_image(tmp_path / "s1" / name)
    for name in ("SUV.nii", "CT.nii.gz"):
        _touch_image(tmp_path / "s2" / name)
    refs = {r.case_id: r for r in find_studies([tmp_path])}
    assert refs["s1"].ct.name == "CTres.nii" and refs["s1"].pet.name == "SUV.mha"
    assert refs["s2"].ct.name == "CT.nii.gz"


def test_grand_challenge_layout(tmp_path):
    pet = _touch_image(tmp_path / "input" / "images" / "pet" / "8c7e-uuid.mha")
    ct = _touch_image(tmp_path / "input" / "images" / "ct" / "8c7e-uuid.mha")
    (ref,) = find_studies([tmp_path / "input"])
    assert (ref.layout, ref.pet, ref.ct, ref.case_id) == ("grand-challenge", pet, ct, "8c7e-uuid")


def test_grand_challenge_with_two_pet_files_is_ambiguous(tmp_path):
    _touch_image(tmp_path / "images" / "pet" / "a.mha")
    _touch_image(tmp_path / "images" / "pet" / "b.mha")
    _touch_image(tmp_path / "images" / "ct" / "a.mha")
    (ref,) = find_studies([tmp_path])
    assert isinstance(ref.problem, AmbiguousStudyError) and ref.problem.value == 2


def test_nnunet_layout_channels_and_labels(tmp_path):
    for case in ("lung_001", "lung_002"):
        for ch in ("0000", "0001"):
            _touch_image(tmp_path / "imagesTr" / f"{case}_{ch}.nii.gz")
    label = _touch_image(tmp_path / "labelsTr" / "lung_001.nii.gz")
    refs = find_studies([tmp_path])
    assert [r.case_id for r in refs] == ["lung_001", "lung_002"]
    assert refs[0].pet.name == "lung_001_0000.nii.gz" and refs[0].ct.name == "lung_001_0001.nii.gz"
    assert refs[0].seg == label and refs[1].seg is None
    swapped = find_studies([tmp_path / "imagesTr"], pet_channel="0001", ct_channel="0000")
    assert swapped[0].pet.name == "lung_001_0001.nii.gz"
    # a single channel file names its case
    (one,) = find_studies([tmp_path / "imagesTr" / "lung_002_0001.nii.gz"])
    assert one.case_id == "lung_002" and one.pet.name == "lung_002_0000.nii.gz"


def test_missing_images_are_reported_per_study(tmp_path):
    _touch_image(tmp_path / "no_ct" / "SUV.nii.gz")
    _touch_image(tmp_path / "no_pet" / "CTres.nii.gz")
    _touch_image(tmp_path / "nn" / "case_0000.nii.gz")
    refs = {r.case_id: r for r in find_studies([tmp_path])}
    assert set(refs) == {"no_ct", "no_pet", "case"}
    assert all(isinstance(r.problem, MissingImageError) for r in refs.values())
    assert "CTres" in str(refs["no_ct"].problem) and "SUV" in str(refs["no_pet"].problem)
    assert "case_0001" in str(refs["case"].problem)


def test_bad_input_paths(tmp_path):
    with pytest.raises(InputPathError, match="no such"):
        find_studies([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    with pytest.raises(InputPathError, match="no study found"):
        find_studies([tmp_path / "empty"])


@pytest.mark.parametrize("raw, expected", [
    ("../../etc/passwd", "etc_passwd"),
    ("..", "case"),
    ("", "case"),
    (".hidden", "hidden"),
    ("a b/c\\d:e", "a_b_c_d_e"),
    ("Patient Ü 12", "Patient_12"),
    ("PETCT_0011_08-12-2005", "PETCT_0011_08-12-2005"),
])
def test_sanitize_case_id(raw, expected):
    assert sanitize_case_id(raw) == expected


def test_case_ids_stay_inside_the_output_folder_and_unique(tmp_path):
    make_autopet_study(tmp_path / "a" / "study 1")
    make_autopet_study(tmp_path / "b" / "study:1")
    refs = find_studies([tmp_path])
    ids = [r.case_id for r in refs]
    assert ids == ["study_1", "study_1-2"]
    out = tmp_path / "out"
    for case_id in ids:
        assert (out / f"{case_id}.nii.gz").resolve().parent == out.resolve()
