"""Running exported graphs in ONNX Runtime (CPU) beside the PyTorch model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def ort_session(path: Path, threads: int | None = None):
    """An ONNX Runtime CPU session for ``path``."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OrtModule(torch.nn.Module):
    """An ONNX graph behind the nn.Module call convention (tensor in, logits tensor out), so
    the training-side whole-volume predictors can run exported graphs unchanged."""

    def __init__(self, path: Path, threads: int | None = None):
        super().__init__()
        self.session = ort_session(path, threads)
        self.input_name = self.session.get_inputs()[0].name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.session.run(None, {self.input_name: x.detach().cpu().numpy().astype(np.float32)})[0]
        return torch.from_numpy(np.asarray(out, dtype=np.float32))


def sigmoid64(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


@torch.no_grad()
def max_module_difference(model: torch.nn.Module, other: torch.nn.Module, batches: list[np.ndarray]) -> float:
    """Largest |sigmoid(model) - sigmoid(other)| over ``batches`` (float64 comparison); inf where
    an output is not finite."""
    model.eval()
    worst = 0.0
    for x in batches:
        ref = sigmoid64(model(torch.from_numpy(x)).numpy())
        got = sigmoid64(other(torch.from_numpy(x)).numpy())
        diff = float(np.abs(ref - got).max())
        if not np.isfinite(diff):  # NaN would pass any "diff > limit" test: count it as no agreement
            return float("inf")
        worst = max(worst, diff)
    return worst


def max_probability_difference(model: torch.nn.Module, onnx_path: Path, batches: list[np.ndarray]) -> float:
    """Largest |sigmoid(torch) - sigmoid(ONNX Runtime)| over ``batches``."""
    return max_module_difference(model, OrtModule(onnx_path), batches)
