import json

import pytest

from l2s_engine.manifest import (
    MANIFEST,
    ManifestError,
    ModelFile,
    TensorInfo,
    manifest_dict,
    read_manifest,
    sha256_of,
)
from l2s_engine.spec import preset


def make_engine_dir(tmp_path):
    model = tmp_path / "loc2d.onnx"
    model.write_bytes(b"graph bytes")
    entry = ModelFile("loc2d", 0, "onnx", "fp32", "loc2d.onnx", sha256_of(model),
                      (TensorInfo("slices", "float32", (-1, 1, 128, 128)),),
                      (TensorInfo("logits", "float32", (-1, 1, 128, 128)),), {"opset": 17})
    (tmp_path / MANIFEST).write_text(json.dumps(manifest_dict(preset("lite"), [entry], {"k": "v"})))
    return model


def test_round_trip_and_hash_matches_hashlib(tmp_path):
    import hashlib

    model = make_engine_dir(tmp_path)
    manifest = read_manifest(tmp_path)
    (entry,) = manifest.select("loc2d", "onnx", "fp32")
    assert entry.sha256 == hashlib.sha256(b"graph bytes").hexdigest()
    assert manifest.spec == preset("lite") and manifest.path(entry) == model
    assert entry.inputs[0].shape == (-1, 1, 128, 128) and entry.extra == {"opset": 17}


def test_tampered_and_missing_files_are_refused_by_name(tmp_path):
    model = make_engine_dir(tmp_path)
    model.write_bytes(b"graph bytez")
    with pytest.raises(ManifestError, match="loc2d.onnx.*altered"):
        read_manifest(tmp_path)
    assert read_manifest(tmp_path, verify=False).files[0].path == "loc2d.onnx"
    model.unlink()
    with pytest.raises(ManifestError, match="loc2d.onnx.*missing"):
        read_manifest(tmp_path)


def test_schema_and_malformed_manifests(tmp_path):
    make_engine_dir(tmp_path)
    data = json.loads((tmp_path / MANIFEST).read_text())
    data["schema_version"] = 99
    (tmp_path / MANIFEST).write_text(json.dumps(data))
    with pytest.raises(ManifestError, match="schema 99"):
        read_manifest(tmp_path)
    data["schema_version"] = 1
    del data["files"][0]["sha256"]
    (tmp_path / MANIFEST).write_text(json.dumps(data))
    with pytest.raises(ManifestError, match="malformed"):
        read_manifest(tmp_path)
    with pytest.raises(ManifestError, match="no manifest"):
        read_manifest(tmp_path / "elsewhere")


def test_plan_mismatch_names_version_and_architecture():
    from l2s_engine.manifest import ModelFile, plan_mismatch

    plan = ModelFile("seg3d", 0, "plan", "fp16", "seg3d.plan", "0" * 64, (), (),
                     {"tensorrt_version": "10.3.0.26", "compute_capability": "9.0", "gpu_name": "NVIDIA H100"})
    assert plan_mismatch(plan, "10.3.0", "9.0") is None  # build number ignored
    version = plan_mismatch(plan, "10.4.0", "9.0")
    assert "TensorRT 10.3.0.26" in version and "10.4.0" in version and "l2s-export" in version
    arch = plan_mismatch(plan, "10.3.0.26", "8.6")
    assert "compute capability 9.0" in arch and "8.6" in arch and "TensorRT 10" not in arch
    assert "seg3d.plan" in plan_mismatch(ModelFile("seg3d", 0, "plan", "fp16", "seg3d.plan", "", (), ()), "10.3.0", "9.0")
