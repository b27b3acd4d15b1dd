import argparse
import dataclasses
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


def test_spacing_flag_and_weights_that_predate_the_spacing(tmp_path):
    from l2s_export.checks import parse_spacing
    from l2s_training.weights import write_config

    from l2s_engine.spec import preset

    assert parse_spacing("3.0,2.0364,2.0364") == (3.0, 2.0364, 2.0364)
    for bad in ("3,2", "0,2,2", "3,-1,2", "a,b,c", "nan,2,2"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_spacing(bad)
    folder = tmp_path / "old"
    write_config(folder, preset("lite"), {})
    for name in ("loc2d.safetensors", "seg3d.safetensors"):
        (folder / name).write_bytes(b"")
    data = json.loads((folder / "config.json").read_text())
    del data["spec"]["spacing_zyx_mm"]  # as written before the field existed
    (folder / "config.json").write_text(json.dumps(data))
    before = (folder / "config.json").read_bytes()
    with pytest.raises(ExportError, match=r"no network spacing.*l2s-export WEIGHTS_DIR --spacing Z,Y,X"):
        check_weights_dirs([folder])
    assert check_weights_dirs([folder], (5.0, 4.0, 4.0)).spacing_zyx_mm == (5.0, 4.0, 4.0)
    assert (folder / "config.json").read_bytes() == before  # the weights are not changed
    # a recorded spacing is a fact: --spacing may not contradict it
    new = tmp_path / "new"
    write_config(new, preset("lite"), {})
    for name in ("loc2d.safetensors", "seg3d.safetensors"):
        (new / name).write_bytes(b"")
    assert check_weights_dirs([new], (6.1, 4.2, 4.2)).spacing_zyx_mm == (6.1, 4.2, 4.2)
    with pytest.raises(ExportError, match=r"records the network spacing \(6.1, 4.2, 4.2\)"):
        check_weights_dirs([new], (5.0, 4.0, 4.0))
    other = tmp_path / "other"  # a fold trained at another spacing
    write_config(other, dataclasses.replace(preset("lite"), spacing_zyx_mm=(5.0, 4.0, 4.0)), {})
    for name in ("loc2d.safetensors", "seg3d.safetensors"):
        (other / name).write_bytes(b"")
    with pytest.raises(ExportError, match="must share the network spacing"):
        check_weights_dirs([new, other])


def test_fp16_conversion_says_once_how_many_tiny_weights_were_clamped(tmp_path, caplog):
    """The converter warns once per weight below fp16's range: noise a user cannot act on. One
    log line counts them; the values are clamped to +-1e-7 as the converter documents."""
    import logging
    import warnings

    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from l2s_export.onnx_graphs import convert_fp16

    weights = np.array([1e-9, -3e-10, 0.5, 0.0], np.float32)
    graph = helper.make_graph([helper.make_node("Mul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])],
                              [numpy_helper.from_array(weights, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "a.onnx"))
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.DEBUG, logger="l2s_export"):
        warnings.simplefilter("always")
        convert_fp16(tmp_path / "a.onnx", tmp_path / "b.onnx")
    assert not [w for w in caught if "truncated" in str(w.message)]
    assert "2 fp32 weight value(s) below fp16's range" in caplog.text
    (half,) = [numpy_helper.to_array(t) for t in onnx.load(str(tmp_path / "b.onnx")).graph.initializer]
    np.testing.assert_array_equal(half, np.array([1e-7, -1e-7, 0.5, 0.0], np.float16))
