"""A stand-in network behind the Backend interface: deterministic, window-dependent logits."""

from __future__ import annotations

import numpy as np

from l2s_engine.backends.base import Backend
from l2s_engine.manifest import ModelFile, TensorInfo


def fake_logits(x: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """(N, C, *S) -> (N, 1, *S): depends on the voxel, the whole window and the position in it,
    so blending overlapping windows is not trivial. float64 in, float64 out."""
    x = np.asarray(x, dtype=np.float64)
    ramp = sum(np.linspace(-1.0, 1.0, n).reshape([-1 if a == i else 1 for a in range(x.ndim - 2)])
               for i, n in enumerate(x.shape[2:]))
    mean = x.mean(axis=tuple(range(1, x.ndim)), keepdims=True)[:, :1]
    return scale * (3.0 * x[:, :1] - x[:, -1:] ** 2 + 2.0 * mean + ramp[None, None]) - 1.0


def model_file(shape: tuple[int, ...], name: str = "x") -> ModelFile:
    return ModelFile("seg3d", 0, "fake", "fp32", "fake.onnx", "0" * 64,
                     (TensorInfo(name, "float32", (-1, *shape[1:])),), (TensorInfo("logits", "float32", (-1, 1, *shape[2:])),))


class FakeBackend(Backend):
    name = "fake"
    format = "fake"

    def __init__(self, in_shape: tuple[int, ...], scale: float = 1.0):
        super().__init__("fake.onnx", model_file(in_shape))
        self.scale = scale
        self.calls = 0

    def _activate(self):
        pass

    def _deactivate(self):
        pass

    def _infer(self, feed):
        self.calls += 1
        return {"logits": fake_logits(next(iter(feed.values())), self.scale).astype(np.float32)}
