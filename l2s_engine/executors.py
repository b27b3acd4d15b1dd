"""Opening an engine directory with the executor the run asks for: host or GPU pipeline.

Above both executors (``pipeline.Engine``, the host one; ``cuda.engine.DeviceEngine``, the GPU
one), so that neither imports the other's chooser.
"""

from __future__ import annotations

from pathlib import Path

from .pipeline import Engine, InferOptions


def open_engine(engine_dir: Path, options: InferOptions = InferOptions(), keep_maps: bool = True) -> Engine:
    """The host pipeline, or the GPU pipeline (``cuda.engine.DeviceEngine``) for the tensorrt
    backend and for any backend asked to run on ``cuda``.

    Args:
        engine_dir: output of ``l2s-export``.
        options: the run's options.
        keep_maps: the GPU pipeline copies the probability maps back only when asked.
    """
    if options.backend == "tensorrt" or (options.device or "cpu").startswith("cuda"):
        from .cuda.engine import DeviceEngine

        return DeviceEngine(engine_dir, options, keep_maps=keep_maps)
    return Engine(engine_dir, options)
