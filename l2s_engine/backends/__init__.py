"""Model runners behind one small interface (modelled on Polygraphy's runners).

A backend runs one model file of an engine directory: it is built from the manifest entry,
used as a context manager, and maps named input arrays to named output arrays. Each backend
module imports its heavy dependency only when activated.
"""

from __future__ import annotations

import importlib

from .base import Backend, BackendError, MissingDependencyError, NoCudaGpuError

# name -> (module, class); modules are imported only when the backend is chosen
BACKENDS: dict[str, tuple[str, str]] = {
    "onnxruntime": ("l2s_engine.backends.onnxrt", "OnnxRuntimeBackend"),
    "openvino": ("l2s_engine.backends.openvino", "OpenVinoBackend"),
    "torch": ("l2s_engine.backends.torchrt", "TorchBackend"),
    "tensorrt": ("l2s_engine.backends.tensorrt", "TensorRTBackend"),
}


def backend_class(name: str) -> type[Backend]:
    """The backend class registered as ``name``.

    Raises:
        BackendError: no backend of that name.
    """
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r}; choose one of {', '.join(sorted(BACKENDS))}")
    module, cls = BACKENDS[name]
    return getattr(importlib.import_module(module), cls)


__all__ = ["BACKENDS", "Backend", "BackendError", "MissingDependencyError", "NoCudaGpuError", "backend_class"]
