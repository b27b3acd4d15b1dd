"""The TensorRT backend's device call around a fake plan context (TensorRT and CuPy cannot run
here): the output shape the context reports is checked before the plan may write, and host
calls reuse one stream, so one execution context serves them all."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest

from l2s_engine.backends import BackendError
from l2s_engine.backends.tensorrt import TensorRTBackend
from l2s_engine.manifest import ModelFile, TensorInfo

SHAPE = (4, 2, 8, 8, 8)  # the profile's max batch of 4


def _model() -> ModelFile:
    return ModelFile("seg3d", 0, "plan", "fp16", "seg3d.plan", "", (TensorInfo("windows", "float32", (-1, *SHAPE[1:])),),
                     (TensorInfo("logits", "float16", (-1, 1, *SHAPE[2:])),),
                     {"profile": {"windows": [[1, *SHAPE[1:]], [2, *SHAPE[1:]], list(SHAPE)]}})


class _Data:
    def __init__(self, ptr: int):
        self.ptr = ptr


class DeviceArray(np.ndarray):
    """A numpy array that answers ``.data.ptr`` as a CuPy array does."""

    @property
    def data(self):
        return _Data(self.__array_interface__["data"][0])

    def get(self, stream=None):
        return self.view(np.ndarray).copy()


class FakeContext:
    def __init__(self, out_shape=None):
        self.shape, self.out_shape, self.runs = None, out_shape, 0

    def set_input_shape(self, name, shape):
        self.shape = shape
        return True

    def get_tensor_shape(self, name):
        return self.out_shape or (self.shape[0], 1, *self.shape[2:])

    def set_tensor_address(self, name, ptr):
        return True

    def execute_async_v3(self, stream_ptr):
        self.runs += 1
        return True


class FakeEngine:
    def __init__(self):
        self.contexts = []

    def create_execution_context(self):
        self.contexts.append(FakeContext())
        return self.contexts[-1]


class FakeStream:
    count = 0

    def __init__(self, non_blocking=False):
        FakeStream.count += 1
        self.ptr = 1000 + FakeStream.count

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def synchronize(self):
        return None


@pytest.fixture
def fake_cupy(monkeypatch):
    module = types.SimpleNamespace(
        cuda=types.SimpleNamespace(Stream=FakeStream),
        empty=lambda shape, dtype: np.zeros(shape, dtype).view(DeviceArray),
        asarray=lambda a: np.asarray(a).view(DeviceArray))
    monkeypatch.setitem(sys.modules, "cupy", module)
    return module


def _backend() -> TensorRTBackend:
    backend = TensorRTBackend(Path("seg3d.plan"), _model())
    backend.engine, backend.active = FakeEngine(), True  # as _activate leaves it
    return backend


def test_a_context_reporting_another_output_shape_is_refused_before_the_plan_runs(fake_cupy):
    backend = _backend()
    stream = FakeStream()
    context = FakeContext(out_shape=(3, 2, 8, 8, 8))  # not the manifest's (n, 1, 8, 8, 8)
    backend.contexts[stream.ptr] = (context, np.zeros((4, 1, 8, 8, 8), np.float16).view(DeviceArray))
    x = np.zeros((3, *SHAPE[1:]), np.float32).view(DeviceArray)
    with pytest.raises(BackendError, match=r"output for a batch of 3 is \(3, 2, 8, 8, 8\), the manifest says "
                                           r"\(3, 1, 8, 8, 8\)"):
        backend.infer_device(x, stream)
    assert context.runs == 0


def test_host_calls_share_one_stream_and_one_context(fake_cupy):
    backend = _backend()
    x = np.zeros((2, *SHAPE[1:]), np.float32)
    for _ in range(3):
        out = backend._infer({"windows": x})["logits"]
        assert out.shape == (2, 1, 8, 8, 8) and out.dtype == np.float32
    assert len(backend.engine.contexts) == 1 and backend.engine.contexts[0].runs == 3


def test_prepare_makes_the_context_before_any_batch(fake_cupy):
    backend = _backend()
    stream = FakeStream()
    backend.prepare(stream)
    assert len(backend.engine.contexts) == 1 and backend.engine.contexts[0].runs == 0
    backend.infer_device(np.zeros((1, *SHAPE[1:]), np.float32).view(DeviceArray), stream)
    assert len(backend.engine.contexts) == 1 and backend.engine.contexts[0].runs == 1
