"""The backend interface: named arrays in, named arrays out, checked once here."""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

import numpy as np

from ..errors import L2SError
from ..manifest import Manifest, ModelFile, TensorInfo


class BackendError(L2SError):
    """A backend cannot be built or was fed wrong inputs."""


class MissingDependencyError(BackendError):
    """The package a backend needs is not installed."""

    def __init__(self, backend: str, package: str, install: str):
        self.backend, self.package, self.install = backend, package, install
        super().__init__(f"the {backend} backend needs {package}, which is not installed: {install}")


class NoCudaGpuError(BackendError):
    """A GPU path (the tensorrt backend, ``--device cuda``) was asked for on a machine without
    a CUDA GPU.

    Attributes:
        what: what needed the GPU; reason: why the driver says there is none.
    """

    def __init__(self, what: str, reason: str):
        self.what, self.reason = what, reason
        super().__init__(f"no CUDA GPU: {what} runs on an NVIDIA GPU, and {reason}; run it on a GPU host, or "
                         "use --backend onnxruntime --device cpu here (--backend auto picks what this machine runs)")


def import_or_explain(module: str, backend: str, install: str):
    """Import ``module`` for ``backend``, or raise MissingDependencyError saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(backend, module, install) from exc


class Backend(ABC):
    """Runs one model file.

    Subclasses set ``name`` and ``format`` (the manifest format they run) and implement
    ``_activate``, ``_deactivate`` and ``_infer``; inputs are validated here, once for all.

    Args:
        path: the model file.
        model: its manifest entry (input/output names, dtypes, shapes; -1 = dynamic).
    """

    name: ClassVar[str]
    format: ClassVar[str]
    device_capable: ClassVar[bool] = False  # implements ``infer_device`` (the GPU pipeline)

    def __init__(self, path: Path, model: ModelFile):
        self.path = Path(path)
        self.model = model
        self.active = False

    @classmethod
    def model_files(cls, manifest: Manifest, role: str, precision: str) -> list[ModelFile]:
        """The manifest entries this backend runs for ``role`` at ``precision``, one per fold."""
        return manifest.select(role, cls.format, precision)

    @classmethod
    def from_options(cls, path: Path, model: ModelFile, options) -> Backend:
        """Build the backend for one model file from the run's ``InferOptions``."""
        return cls(path, model)

    @property
    def input_specs(self) -> dict[str, TensorInfo]:
        return {t.name: t for t in self.model.inputs}

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.model.outputs]

    def __enter__(self) -> Backend:
        self.activate()
        return self

    def __exit__(self, *exc) -> None:
        self.deactivate()

    def activate(self) -> None:
        if not self.active:
            self._activate()
            self.active = True

    def deactivate(self) -> None:
        if self.active:
            self._deactivate()
            self.active = False

    def infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model on ``feed`` (name -> array) and return name -> array.

        Raises:
            BackendError: not activated, or a missing/extra input, or a wrong dtype or shape.
        """
        self.require_active()
        self.check_feed(feed)
        return self._infer(feed)

    def require_active(self) -> None:
        if not self.active:
            raise BackendError(f"{self.name} backend for {self.path.name} used outside its context (activate it first)")

    def describe(self) -> dict:
        """What this model file ran as, for the report (backends that choose more say more)."""
        return {"file": self.path.name}

    def prepare(self, stream) -> None:  # noqa: B027 - a no-op unless a backend keeps per-stream state
        """Make what running on device ``stream`` needs now, outside the timed batches (GPU backends)."""

    def release_memory(self) -> None:  # noqa: B027 - a no-op unless a backend keeps memory
        """Free working memory the backend keeps between calls (a stage is done); the next call
        allocates it again. Most backends keep none."""

    def infer_device(self, x, stream):
        """Run the model on a device array (CuPy, batch first) on ``stream`` (a CuPy stream);
        returns the first output as a float32 device array, valid until the next call on
        that stream. Only GPU backends implement it."""
        raise BackendError(f"the {self.name} backend runs on the host only; the GPU pipeline needs the torch "
                           "(--device cuda) or tensorrt backend")

    def check_device_input(self, x) -> None:
        """``check_feed`` for the single input of a device call."""
        self.require_active()
        self.check_feed({next(iter(self.input_specs)): x})

    def check_feed(self, feed: Mapping[str, np.ndarray]) -> None:
        specs = self.input_specs
        if set(feed) != set(specs):
            raise BackendError(f"{self.path.name}: inputs {sorted(feed)} given, the model takes {sorted(specs)}")
        for name, array in feed.items():
            spec = specs[name]
            if np.dtype(array.dtype) != np.dtype(spec.dtype):
                raise BackendError(f"{self.path.name}: input {name!r} is {array.dtype}, the model takes {spec.dtype}")
            if array.ndim != len(spec.shape) or any(s not in (-1, a) for s, a in zip(spec.shape, array.shape)):
                raise BackendError(f"{self.path.name}: input {name!r} has shape {tuple(array.shape)}, the model "
                                   f"takes {spec.shape} (-1: any)")

    @abstractmethod
    def _activate(self) -> None: ...

    @abstractmethod
    def _deactivate(self) -> None: ...

    @abstractmethod
    def _infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]: ...
