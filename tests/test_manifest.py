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


def _rewrite(tmp_path, change):
    """Apply ``change`` to the manifest's JSON data and write it back."""
    data = json.loads((tmp_path / MANIFEST).read_text())
    data = change(data)
    (tmp_path / MANIFEST).write_text(json.dumps(data))


def test_an_entry_pointing_outside_the_folder_is_refused_even_when_its_hash_matches(tmp_path):
    engine = tmp_path / "engine"
    engine.mkdir()
    model = make_engine_dir(engine)
    outside = tmp_path / "outside.onnx"
    outside.write_bytes(model.read_bytes())  # same bytes: the recorded sha256 matches it

    def point_at(name):
        def change(data):
            data["files"][0]["path"] = name
            return data
        return change

    for name in ("../outside.onnx", str(outside), "sub/loc2d.onnx", "sub\\loc2d.onnx", "", ".", "..",
                 "C:loc2d.onnx", 7):
        make_engine_dir(engine)
        _rewrite(engine, point_at(name))
        with pytest.raises(ManifestError,
                           match=r"manifest.json: file entry .* is not a plain file name.*l2s-export"):
            read_manifest(engine)
        with pytest.raises(ManifestError, match="not a plain file name"):
            read_manifest(engine, verify=False)  # refused before any file is opened


def test_a_manifest_that_is_not_an_object_is_a_named_error(tmp_path):
    make_engine_dir(tmp_path)
    for data, words in (([1, 2], "JSON list, not an object"), ("text", "JSON str, not an object"),
                        (None, "JSON NoneType, not an object")):
        (tmp_path / MANIFEST).write_text(json.dumps(data))
        with pytest.raises(ManifestError, match=f"manifest.json: the manifest is a {words}.*l2s-export"):
            read_manifest(tmp_path)


@pytest.mark.parametrize("files, kind", [({}, "a dict"), ([], None), (["loc2d.onnx"], "a list of str"),
                                         ([{"path": "x"}, 3], "a list of dict, int"), (None, "nothing"),
                                         ("loc2d.onnx", "a str")])
def test_files_must_be_a_list_of_objects(tmp_path, files, kind):
    make_engine_dir(tmp_path)

    def change(data):
        data["files"] = files
        return data

    _rewrite(tmp_path, change)
    if kind is None:  # an empty list is well-formed: no model files (the backends say what is missing)
        assert read_manifest(tmp_path).files == ()
        return
    with pytest.raises(ManifestError, match=f"'files' must be a list of objects, got {kind}"):
        read_manifest(tmp_path)


def test_newer_schema_says_upgrade_the_runtime_older_says_re_export(tmp_path):
    make_engine_dir(tmp_path)
    for version, words in ((2, r"schema 2 is newer than this runtime reads \(1\); upgrade l2s-engine"),
                           (0, r"schema 0, this runtime reads 1; re-run `l2s-export"),
                           (None, r"schema None, this runtime reads 1; re-run `l2s-export"),
                           ("2", r"schema '2', this runtime reads 1; re-run `l2s-export")):
        _rewrite(tmp_path, lambda data, version=version: {**data, "schema_version": version})
        with pytest.raises(ManifestError, match=words) as caught:
            read_manifest(tmp_path)
        assert ("upgrade l2s-engine" in str(caught.value)) == (version == 2)


@pytest.mark.parametrize("field, value", [("fold", "first"), ("inputs", 5), ("spec", [1]), ("info", [1])])
def test_wrongly_typed_fields_are_named_errors_not_tracebacks(tmp_path, field, value):
    make_engine_dir(tmp_path)

    def change(data):
        if field in ("spec", "info"):
            data[field] = value
        else:
            data["files"][0][field] = value
        return data

    _rewrite(tmp_path, change)
    with pytest.raises(ManifestError, match="manifest.json: .*l2s-export"):
        read_manifest(tmp_path)


def test_plan_gpu_note_only_for_another_gpu_model():
    from l2s_engine.manifest import ModelFile, plan_gpu_note

    plan = ModelFile("seg3d", 0, "plan", "fp16", "seg3d.plan", "0" * 64, (), (),
                     {"tensorrt_version": "10.3.0", "compute_capability": "8.9", "gpu_name": "NVIDIA L4"})
    assert plan_gpu_note(plan, "NVIDIA L4") is None
    note = plan_gpu_note(plan, "NVIDIA GeForce RTX 4090")
    assert "NVIDIA L4" in note and "RTX 4090" in note and "l2s-export" in note
    assert plan_gpu_note(ModelFile("seg3d", 0, "plan", "fp16", "seg3d.plan", "", (), ()), "NVIDIA L4") is None
