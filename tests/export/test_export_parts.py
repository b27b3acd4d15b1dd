import argparse
import json

import pytest

pytest.importorskip("torch")

from l2s_engine.errors import OutputError  # noqa: E402
from l2s_engine.manifest import ModelFile, TensorInfo  # noqa: E402
from l2s_export.checks import ExportError, check_weights_dirs, check_writable, parse_profile  # noqa: E402
from l2s_export.tensorrt_build import plan_name, profile_shapes, tensorrt_unavailable_reason  # noqa: E402


def test_profile_flags():
    assert parse_profile("1,16,32") == (1, 16, 32)
    for bad in ("1,16", "4,2,8", "0,1,2", "a,b,c"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_profile(bad)


def test_profile_shapes_and_plan_names():
    model = ModelFile("seg3d", 0, "onnx", "fp16", "seg3d_fp16.onnx", "0" * 64,
                      (TensorInfo("windows", "float32", (-1, 2, 64, 64, 64)),),
                      (TensorInfo("logits", "float32", (-1, 1, 64, 64, 64)),))
    assert profile_shapes(model, (1, 2, 4)) == {"windows": [[1, 2, 64, 64, 64], [2, 2, 64, 64, 64], [4, 2, 64, 64, 64]]}
    assert plan_name(model) == "seg3d_fp16.plan"


def test_tensorrt_absence_is_reported_not_hidden():
    try:
        import tensorrt  # noqa: F401
        has_builder = hasattr(tensorrt, "Builder")
    except ImportError:
        has_builder = False
    reason = tensorrt_unavailable_reason()
    if not has_builder:
        assert reason and ("tensorrt" in reason or "builder" in reason)


def test_weights_dir_errors(tmp_path):
    from l2s_training.weights import write_config

    from l2s_engine.spec import preset

    folder = tmp_path / "w"
    write_config(folder, preset("lite"), {})
    with pytest.raises(ExportError, match="missing loc2d.safetensors, seg3d.safetensors"):
        check_weights_dirs([folder])
    for name in ("loc2d.safetensors", "seg3d.safetensors"):
        (folder / name).write_bytes(b"")
    data = json.loads((folder / "config.json").read_text())
    data["spec"]["version"] = 99
    (folder / "config.json").write_text(json.dumps(data))
    with pytest.raises(ExportError, match="version 99"):
        check_weights_dirs([folder])


def test_output_folder_not_writable(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="cannot write"):
        check_writable(blocker / "engines")
