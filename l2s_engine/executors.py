"""Opening an engine directory with the executor its run resolves to: host or device.

Above both executors (``pipeline.HostEngine``; ``cuda.engine.DeviceEngine``) and the core they
share, so that neither imports the other.
"""

from __future__ import annotations

from pathlib import Path

from .core import EngineCore, InferOptions, Run, resolve_run
from .manifest import Manifest, read_manifest


def open_engine(source: Path | Manifest, run: Run | InferOptions = InferOptions(), keep_maps: bool = False) -> EngineCore:
    """The executor of ``run``: the device one (two CUDA streams) for tensorrt and for any
    backend on cuda, else the host one.

    Args:
        source: the engine directory (``l2s-export``'s output) or its manifest, read once.
        run: a resolved run (``core.resolve_run``), or options to resolve here.
        keep_maps: with options: copy the probability maps back (``--save-probs``).
    """
    manifest = source if isinstance(source, Manifest) else read_manifest(source)
    if isinstance(run, InferOptions):
        run = resolve_run(run, manifest, keep_maps=keep_maps)
    if run.executor == "device":
        from .cuda.engine import DeviceEngine

        return DeviceEngine(manifest, run)
    from .pipeline import HostEngine

    return HostEngine(manifest, run)
