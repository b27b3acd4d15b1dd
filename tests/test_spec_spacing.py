"""The network spacing in the spec: presets, validation, round trip, and the refusal of specs
(config.json, manifest.json) that predate the field."""

import json
from pathlib import Path

import pytest

from l2s_engine.manifest import MANIFEST, ManifestError, ModelFile, TensorInfo, manifest_dict, read_manifest, sha256_of
from l2s_engine.phantoms.study import SIZES
from l2s_engine.spec import MissingSpacingError, Spec, SpecError, preset

DEMO_CONFIG = Path(__file__).resolve().parents[1] / "weights" / "demo" / "config.json"


def test_presets_carry_their_spacing_in_numpy_order():
    assert preset("paper").spacing_zyx_mm == (3.0, 2.0364, 2.0364)      # autoPET: 3 mm slices
    assert preset("lite").spacing_zyx_mm == SIZES["small"].spacing == (6.1, 4.2, 4.2)


def test_round_trip_keeps_the_spacing_as_a_tuple():
    spec = Spec("paper", spacing_zyx_mm=(5.0, 4.0, 3.5))
    data = json.loads(json.dumps(spec.to_dict()))  # as a manifest holds it
    assert data["spacing_zyx_mm"] == [5.0, 4.0, 3.5]
    back = Spec.from_dict(data)
    assert back == spec and back.spacing_zyx_mm == (5.0, 4.0, 3.5)


@pytest.mark.parametrize("bad", [(0.0, 2.0, 2.0), (3.0, -2.0, 2.0), (3.0, float("nan"), 2.0),
                                 (3.0, 2.0), (3.0, 2.0, float("inf")), ("3", 2.0, 2.0)])
def test_invalid_spacings_are_refused(bad):
    with pytest.raises(SpecError, match="spacing_zyx_mm"):
        Spec("paper", spacing_zyx_mm=bad).validate()


def test_a_spec_without_spacing_is_refused_with_the_command_that_fixes_it():
    data = preset("lite").to_dict()
    del data["spacing_zyx_mm"]
    with pytest.raises(MissingSpacingError) as err:
        Spec.from_dict(data)
    message = str(err.value)
    assert "l2s-export WEIGHTS_DIR --spacing Z,Y,X" in message and "l2s-train" in message and "z,y,x" in message


def test_an_engine_without_spacing_is_refused_by_path(tmp_path):
    model = tmp_path / "loc2d.onnx"
    model.write_bytes(b"graph")
    entry = ModelFile("loc2d", 0, "onnx", "fp32", model.name, sha256_of(model),
                      (TensorInfo("slices", "float32", (-1, 1, 128, 128)),), (TensorInfo("logits", "float32", (-1, 1, 128, 128)),))
    data = manifest_dict(preset("lite"), [entry], {})
    assert read_manifest_from(tmp_path, data).spec.spacing_zyx_mm == (6.1, 4.2, 4.2)
    del data["spec"]["spacing_zyx_mm"]
    with pytest.raises(ManifestError) as err:
        read_manifest_from(tmp_path, data)
    assert str(tmp_path / MANIFEST) in str(err.value) and "--spacing Z,Y,X" in str(err.value)


def read_manifest_from(folder: Path, data: dict):
    (folder / MANIFEST).write_text(json.dumps(data))
    return read_manifest(folder)


def test_demo_weights_record_the_spacing_they_were_trained_at():
    config = json.loads(DEMO_CONFIG.read_text())
    # scripts/train_demo.sh trains on wide `small` phantoms at the lite preset's spacing
    script = (DEMO_CONFIG.parents[2] / "scripts" / "train_demo.sh").read_text()
    assert config["provenance"]["seg3d"]["data"] == ["data/w20/train"] and "DATA=${DATA:-data/w20/train}" in script
    assert config["provenance"]["spacing"] == "the lite preset" and "--spacing preset" in script
    assert tuple(config["spec"]["spacing_zyx_mm"]) == SIZES["small"].spacing
    # the file is still what l2s-train writes (sorted keys, two-space indent)
    assert DEMO_CONFIG.read_text() == json.dumps(config, indent=2, sort_keys=True) + "\n"
