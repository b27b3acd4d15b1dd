"""An engine directory's manifest.json: what each model file is, and proof it is unchanged.

Written by ``l2s-export``; read (torch-free) by the runtime, which uses nothing else to find
and trust its model files.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import L2SError
from .spec import Spec

MANIFEST = "manifest.json"
SCHEMA_VERSION = 1
REBUILD = "re-run `l2s-export WEIGHTS_DIR -o ENGINE_DIR` to rebuild the engine directory"


class ManifestError(L2SError):
    """An engine directory is incomplete, altered, or from another schema version."""


@dataclass(frozen=True)
class TensorInfo:
    """A model input or output; a dimension of -1 is dynamic (the batch)."""

    name: str
    dtype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class ModelFile:
    """One model file of the engine directory.

    Attributes:
        role: "loc2d" or "seg3d".
        fold: index of the fold (weights directory) it was exported from.
        format: "onnx", "plan" (TensorRT) or "pt2" (torch.export).
        precision: "fp32" or "fp16" (of the computation; I/O may stay fp32).
        path: file name relative to the engine directory.
        sha256: hex digest of the file.
        extra: format-specific facts (opset, parity, TensorRT version and GPU, profiles).
    """

    role: str
    fold: int
    format: str
    precision: str
    path: str
    sha256: str
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Manifest:
    """The parsed manifest of an engine directory."""

    directory: Path
    spec: Spec
    files: tuple[ModelFile, ...]
    info: dict[str, Any] = field(default_factory=dict)

    def select(self, role: str, fmt: str, precision: str) -> list[ModelFile]:
        """The model files of ``role`` in ``fmt``/``precision``, one per fold, in fold order."""
        return sorted((f for f in self.files if (f.role, f.format, f.precision) == (role, fmt, precision)),
                      key=lambda f: f.fold)

    def path(self, model: ModelFile) -> Path:
        return self.directory / model.path


def sha256_of(path: Path, chunk: int = 1 << 22) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def manifest_dict(spec: Spec, files: list[ModelFile], info: dict[str, Any]) -> dict[str, Any]:
    """The JSON form of a manifest (used by the exporter to write it)."""
    return {"schema_version": SCHEMA_VERSION, "spec": spec.to_dict(), "info": info,
            "files": [asdict(f) for f in files]}


def read_manifest(directory: Path, verify: bool = True) -> Manifest:
    """Read and check an engine directory's manifest.

    Args:
        directory: the engine directory.
        verify: check every listed file exists and has its recorded sha256.

    Raises:
        ManifestError: naming the missing or altered file, or the unsupported schema, and how
            to rebuild.
    """
    directory = Path(directory)
    path = directory / MANIFEST
    if not path.is_file():
        raise ManifestError(f"{path}: no manifest; {directory} is not an engine directory ({REBUILD})")
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{path}: unreadable manifest ({exc}); {REBUILD}") from exc
    if data.get("schema_version") != SCHEMA_VERSION:
        raise ManifestError(f"{path}: manifest schema {data.get('schema_version')!r}, this runtime reads "
                            f"{SCHEMA_VERSION}; {REBUILD}")
    try:
        spec = Spec.from_dict(data["spec"])
        files = tuple(_model_file(entry) for entry in data["files"])
    except (KeyError, TypeError) as exc:
        raise ManifestError(f"{path}: malformed manifest ({exc!r}); {REBUILD}") from exc
    manifest = Manifest(directory, spec, files, data.get("info", {}))
    if verify:
        for model in files:
            file = manifest.path(model)
            if not file.is_file():
                raise ManifestError(f"{file}: listed in the manifest but missing; {REBUILD}")
            if sha256_of(file) != model.sha256:
                raise ManifestError(f"{file}: contents differ from the manifest (sha256); the file was "
                                    f"altered or replaced; {REBUILD}")
    return manifest


def _model_file(entry: dict[str, Any]) -> ModelFile:
    tensors = {k: tuple(TensorInfo(t["name"], t["dtype"], tuple(t["shape"])) for t in entry[k])
               for k in ("inputs", "outputs")}
    return ModelFile(entry["role"], int(entry["fold"]), entry["format"], entry["precision"], entry["path"],
                     entry["sha256"], tensors["inputs"], tensors["outputs"], dict(entry.get("extra", {})))


def plan_mismatch(model: ModelFile, tensorrt_version: str, compute_capability: str) -> str | None:
    """Why the TensorRT plan ``model`` cannot run with this TensorRT and GPU, or None if it can.

    A serialized plan is tied to the TensorRT release (major.minor.patch) and to the GPU
    architecture (compute capability) it was built for.
    """
    built_version = str(model.extra.get("tensorrt_version", "?"))
    built_cc = str(model.extra.get("compute_capability", "?"))
    problems = []
    if built_version.split(".")[:3] != str(tensorrt_version).split(".")[:3]:
        problems.append(f"built with TensorRT {built_version}, this is TensorRT {tensorrt_version}")
    if built_cc != str(compute_capability):
        problems.append(f"built for compute capability {built_cc} ({model.extra.get('gpu_name', '?')}), "
                        f"this GPU is {compute_capability}")
    if not problems:
        return None
    return f"{model.path}: " + "; ".join(problems) + f"; {REBUILD} on this GPU host"
