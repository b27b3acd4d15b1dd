"""The backend interface: validation in the base class, the ONNX Runtime backend, clear errors."""

import sys
from pathlib import Path

import numpy as np
import pytest

from l2s_engine.backends import BackendError, MissingDependencyError, backend_class
from l2s_engine.manifest import read_manifest

from .engines import fast_engine, reference_logits
from .fakes import FakeBackend


def test_inputs_are_checked_once_for_every_backend():
    net = FakeBackend((1, 2, 4, 4, 4))
    x = np.zeros((3, 2, 4, 4, 4), np.float32)
    with pytest.raises(BackendError, match="outside its context"):
        net.infer({"x": x})
    with net:
        assert net.infer({"x": x})["logits"].shape == (3, 1, 4, 4, 4)  # batch is dynamic
        for feed, what in (({"y": x}, "inputs"), ({"x": x.astype(np.float64)}, "float64"),
                           ({"x": x[:, :1]}, "shape"), ({"x": x[0]}, "shape")):
            with pytest.raises(BackendError, match=what):
                net.infer(feed)
    assert not net.active


def test_onnxruntime_backend_runs_the_graph(tmp_path):
    manifest = read_manifest(fast_engine(tmp_path))
    (model,) = manifest.select("seg3d", "onnx", "fp32")
    cls = backend_class("onnxruntime")
    x = np.random.default_rng(0).uniform(-1, 1, (3, *model.inputs[0].shape[1:])).astype(np.float32)
    with cls(manifest.path(model), model, threads=1) as net:
        out = net.infer({"windows": x})
    np.testing.assert_allclose(out["logits"], reference_logits(x), atol=1e-5)


def test_unknown_backend_and_missing_dependency_are_named(tmp_path, monkeypatch):
    with pytest.raises(BackendError, match="onnxruntime"):
        backend_class("tensorflow")
    manifest = read_manifest(fast_engine(tmp_path))
    (model,) = manifest.select("seg3d", "onnx", "fp32")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails
    net = backend_class("onnxruntime")(manifest.path(model), model)
    with pytest.raises(MissingDependencyError, match="pip install onnxruntime"):
        net.activate()


def test_torch_backend_names_torch_when_missing(monkeypatch):
    from l2s_engine.manifest import ModelFile, TensorInfo

    model = ModelFile("seg3d", 0, "pt2", "fp32", "seg3d.pt2", "", (TensorInfo("windows", "float32", (-1, 2, 8, 8, 8)),),
                      (TensorInfo("logits", "float32", (-1, 1, 8, 8, 8)),))
    monkeypatch.setitem(sys.modules, "torch", None)
    net = backend_class("torch")(Path("seg3d.pt2"), model)
    with pytest.raises(MissingDependencyError, match="pip install torch"):
        net.activate()
