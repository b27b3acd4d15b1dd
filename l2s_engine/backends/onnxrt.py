"""ONNX Runtime backend (CPU execution provider): the embedded default."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..manifest import ModelFile
from .base import Backend, import_or_explain


def _onnxruntime():
    return import_or_explain("onnxruntime", "onnxruntime", "pip install onnxruntime (a dependency of l2s-engine: reinstall it)")


class OnnxRuntimeBackend(Backend):
    """Runs an ONNX graph on ONNX Runtime's CPU provider.

    Args:
        path: the .onnx file.
        model: its manifest entry.
        threads: intra-op threads (None: ONNX Runtime's default, one per physical core).
    """

    name = "onnxruntime"
    format = "onnx"

    def __init__(self, path: Path, model: ModelFile, threads: int | None = None):
        super().__init__(path, model)
        self.threads = threads
        self.session = None

    @classmethod
    def from_options(cls, path: Path, model: ModelFile, options) -> OnnxRuntimeBackend:
        return cls(path, model, threads=options.threads)

    def _activate(self) -> None:
        ort = _onnxruntime()
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # No memory arena: each session's arena keeps its peak for good, so the 2D and 3D
        # sessions together held the sum of their peaks (paper nets, small study: 6.4 GiB peak
        # RSS with arenas, 2.6 GiB without, same speed within noise).
        options.enable_cpu_mem_arena = False
        if self.threads:
            options.intra_op_num_threads = self.threads
        self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])

    def _deactivate(self) -> None:
        self.session = None

    def _infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        names = self.output_names
        return dict(zip(names, self.session.run(names, dict(feed))))

    @staticmethod
    def version() -> str:
        return _onnxruntime().__version__
