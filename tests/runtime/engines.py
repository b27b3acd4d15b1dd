"""A fast stand-in engine directory: tiny ONNX graphs with the demo's I/O, and a real manifest."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from l2s_engine.manifest import MANIFEST, ModelFile, TensorInfo, manifest_dict, sha256_of
from l2s_engine.phantoms.study import SIZES
from l2s_engine.spec import Seg3DSpec, preset

# networks "trained" at the spacing of the `small` phantoms most tests run (as the demo weights)
SPEC = dataclasses.replace(preset("lite"), seg3d=Seg3DSpec(filters=8, patch=(32, 32, 32)),
                           spacing_zyx_mm=SIZES["small"].spacing)


def _graph(path: Path, in_name: str, in_shape: list, scale: float, offset: float) -> None:
    """logits = scale * mean over channels of the input + offset."""
    import onnx
    from onnx import TensorProto, helper

    out_shape = [in_shape[0], 1, *in_shape[2:]]
    nodes = [helper.make_node("ReduceMean", [in_name], ["m"], axes=[1], keepdims=1),
             helper.make_node("Mul", ["m", "scale"], ["s"]),
             helper.make_node("Add", ["s", "offset"], ["logits"])]
    inits = [helper.make_tensor("scale", TensorProto.FLOAT, [], [scale]),
             helper.make_tensor("offset", TensorProto.FLOAT, [], [offset])]
    graph = helper.make_graph(nodes, "fast", [helper.make_tensor_value_info(in_name, TensorProto.FLOAT, in_shape)],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, out_shape)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def fast_engine(out: Path, folds: int = 1, spacing: str | tuple = "small") -> Path:
    """Write the engine directory: PET-driven logits, so hot spots become lesions (fold k
    scales the logits by 12 - k). ``spacing``: the network spacing, a phantom size's (the size
    the test runs: no resampling) or (z, y, x) in mm."""
    spec = dataclasses.replace(SPEC, spacing_zyx_mm=SIZES[spacing].spacing if isinstance(spacing, str) else spacing)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for role, name, shape in (("loc2d", "slices", ["N", SPEC.loc2d.in_slices, *SPEC.loc2d.slice_shape]),
                              ("seg3d", "windows", ["N", 2, *SPEC.seg3d.patch])):
        for fold in range(folds):
            path = out / (f"{role}.onnx" if fold == 0 else f"{role}_fold{fold}.onnx")
            _graph(path, name, shape, 12.0 - fold, -6.0)
            dims = (-1, *shape[1:])
            files.append(ModelFile(role, fold, "onnx", "fp32", path.name, sha256_of(path),
                                   (TensorInfo(name, "float32", dims),),
                                   (TensorInfo("logits", "float32", (-1, 1, *dims[2:])),), {"opset": 17}))
    (out / MANIFEST).write_text(json.dumps(manifest_dict(spec, files, {"exporter": "tests"}), indent=2))
    return out


def reference_logits(x: np.ndarray) -> np.ndarray:
    return 12.0 * np.asarray(x, np.float64).mean(axis=1, keepdims=True) - 6.0
