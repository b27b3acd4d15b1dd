"""An engine directory's manifest.json: what each model file is, and proof it is unchanged.

Written by ``l2s-export``; read (torch-free) by the runtime, which uses nothing else to find
and trust its model files.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path, PureWindowsPath
from typing import Any

from .errors import L2SError
from .spec import MissingSpacingError, Spec, SpecError

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
        path: a plain file name inside the engine directory (``check_file_name``: no folders).
        sha256: hex digest of the file.
        extra: format-specific facts (opset, parity, TensorRT version and GPU, profiles,
            OpenVINO's bf16 gate).
        companions: (file name, sha256) of the files the model needs beside ``path`` (an
            OpenVINO IR's ``.bin``), checked like ``path``.
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
    companions: tuple[tuple[str, str], ...] = ()

    def hashed_files(self) -> list[tuple[str, str]]:
        """(file name, sha256) of the model file and its companions."""
        return [(self.path, self.sha256), *self.companions]


@dataclass(frozen=True)
class Manifest:
    """The parsed manifest of an engine directory."""

    directory: Path
    spec: Spec
    files: tuple[ModelFile, ...]
    info: dict[str, Any] = field(default_factory=dict)
    sha256: str = ""  # of manifest.json as read (provenance: which engine made a mask)

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
        ManifestError: naming the missing or altered file, an entry that is not a plain file
            name, a malformed manifest, or another schema version, and what to do (re-export;
            upgrade l2s-engine for a newer schema).
    """
    directory = Path(directory)
    path = directory / MANIFEST
    if not path.is_file():
        raise ManifestError(f"{path}: no manifest; {directory} is not an engine directory ({REBUILD})")
    try:
        raw = path.read_bytes()
        data = json.loads(raw.decode())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{path}: unreadable manifest ({exc}); {REBUILD}") from exc
    if not isinstance(data, dict):
        raise ManifestError(f"{path}: the manifest is a JSON {type(data).__name__}, not an object; {REBUILD}")
    _check_schema(path, data.get("schema_version"))
    entries = data.get("files")
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ManifestError(f"{path}: 'files' must be a list of objects, got {_kind(entries)}; {REBUILD}")
    try:
        spec = Spec.from_dict(data["spec"])
        files = tuple(_model_file(path, entry) for entry in entries)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        raise ManifestError(f"{path}: malformed manifest ({exc!r}); {REBUILD}") from exc
    except MissingSpacingError as exc:  # an engine exported before the network spacing was recorded
        raise ManifestError(f"{path}: {exc}") from exc
    except SpecError as exc:
        raise ManifestError(f"{path}: invalid spec ({exc}); {REBUILD}") from exc
    info = data.get("info", {})
    if not isinstance(info, dict):
        raise ManifestError(f"{path}: 'info' must be an object, got {_kind(info)}; {REBUILD}")
    manifest = Manifest(directory, spec, files, info, hashlib.sha256(raw).hexdigest())
    if verify:
        for name, sha256 in (pair for model in files for pair in model.hashed_files()):
            file = directory / name
            if not file.is_file():
                raise ManifestError(f"{file}: listed in the manifest but missing; {REBUILD}")
            if sha256_of(file) != sha256:
                raise ManifestError(f"{file}: contents differ from the manifest (sha256); the file was "
                                    f"altered or replaced; {REBUILD}")
    return manifest


def _check_schema(path: Path, version: object) -> None:
    """Refuse a manifest of another schema, saying which side to update."""
    if version == SCHEMA_VERSION:
        return
    if isinstance(version, int) and not isinstance(version, bool) and version > SCHEMA_VERSION:
        raise ManifestError(f"{path}: manifest schema {version} is newer than this runtime reads "
                            f"({SCHEMA_VERSION}); upgrade l2s-engine (pip install -U l2s-engine) to the "
                            f"version that exported it")
    raise ManifestError(f"{path}: manifest schema {version!r}, this runtime reads {SCHEMA_VERSION}; {REBUILD}")


def _kind(value: object) -> str:
    """How a JSON value is described in an error: its JSON type, or a list's item types."""
    if isinstance(value, list):
        return "a list of " + ", ".join(sorted({type(v).__name__ for v in value})) if value else "an empty list"
    return "nothing" if value is None else f"a {type(value).__name__}"


def check_file_name(manifest_path: Path, name: object) -> str:
    """``name`` if it is a plain file name inside the engine directory.

    A manifest names its files relative to its own folder; an absolute path, ``..``, a path
    separator or a drive would let a manifest point at (and the runtime load) a file outside
    the engine directory that merely has the recorded hash.

    Raises:
        ManifestError: naming the entry and how to rebuild the directory.
    """
    plain = (isinstance(name, str) and name not in ("", ".", "..") and "\x00" not in name
             and not any(sep in name for sep in ("/", "\\", os.sep, os.altsep or "/"))
             and PureWindowsPath(name).name == name and not PureWindowsPath(name).drive)
    if not plain:
        raise ManifestError(f"{manifest_path}: file entry {name!r} is not a plain file name inside the engine "
                            f"directory (no absolute path, '..', separator or drive); {REBUILD}")
    return name


def _model_file(manifest_path: Path, entry: dict[str, Any]) -> ModelFile:
    name = check_file_name(manifest_path, entry["path"])
    tensors = {k: tuple(TensorInfo(t["name"], t["dtype"], tuple(t["shape"])) for t in entry[k])
               for k in ("inputs", "outputs")}
    companions = tuple((check_file_name(manifest_path, c[0]), str(c[1])) for c in entry.get("companions", []))
    return ModelFile(entry["role"], int(entry["fold"]), entry["format"], entry["precision"], name,
                     entry["sha256"], tensors["inputs"], tensors["outputs"], dict(entry.get("extra", {})), companions)


def plan_gpu_note(model: ModelFile, gpu_name: str) -> str | None:
    """A warning when a plan built on another GPU model of the same compute capability runs here.

    It runs correctly (the architecture is what a plan is tied to), but TensorRT timed its kernels
    on the GPU it was built on, and the fastest choice may differ on this one.
    """
    built = model.extra.get("gpu_name")
    if not built or built == gpu_name:
        return None
    return (f"{model.path}: built on {built}, running on {gpu_name} (same compute capability): it runs, but its "
            f"kernels were timed on the other GPU; {REBUILD} on this GPU host for its best speed")


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
