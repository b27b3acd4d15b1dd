"""OpenVINO backend (CPU plugin): the IR models of an engine directory, in fp32 or bf16.

The IR (``.xml`` + ``.bin``) holds fp32 weights; the compute precision is OpenVINO's
``INFERENCE_PRECISION_HINT``, always set explicitly (on a bf16 CPU OpenVINO's own default is
bf16). Compiled models (OpenVINO's ``export_model``/``import_model``) are kept in a folder per
OpenVINO version and CPU kind (``cache_dir``), outside the engine directory, so the second run
on a machine loads instead of compiling; each entry is hash-checked before use
(``blob_cache``: OpenVINO's own ``CACHE_DIR`` ran a damaged blob silently).
"""

from __future__ import annotations

import functools
import logging
import os
import re
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..blob_cache import BlobCache, entry_key
from ..cpuinfo import NO_BF16, bf16_isa, cpu_key, this_cpu
from ..manifest import Manifest, ModelFile
from ..precision import choose, parse_precision
from .base import Backend, import_or_explain

log = logging.getLogger("l2s_engine")
INSTALL = "pip install 'l2s-engine[openvino]' (or pip install openvino)"
OV_PRECISION = {"fp32": "f32", "bf16": "bf16"}
_CACHE_WARNED: set[Path] = set()


def _openvino():
    return import_or_explain("openvino", "openvino", INSTALL)


def version() -> str:
    return _openvino().get_version()


def cache_root() -> Path:
    """l2s-engine's cache folder: $L2S_CACHE_DIR, else $XDG_CACHE_HOME/l2s-engine, else ~/.cache/l2s-engine."""
    if os.environ.get("L2S_CACHE_DIR"):
        return Path(os.environ["L2S_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "l2s-engine"


def cache_dir(base: Path | None, ov_version: str) -> Path:
    """The model-cache folder for this OpenVINO version and CPU kind below ``base`` (None: ``cache_root``)."""
    release = re.sub(r"[^A-Za-z0-9.]+", "-", ov_version.split("-")[0])
    return Path(base or cache_root()) / "openvino" / f"{release}-{cpu_key()}"


@functools.lru_cache(maxsize=1)
def machine_bf16() -> str:
    """The CPU's bf16 unit as OpenVINO can use it: "AMX-BF16", "AVX512-BF16" or "none"."""
    isa = bf16_isa(this_cpu()[1])
    if isa != NO_BF16 and "BF16" not in _core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        return NO_BF16  # the flag is there, but this OpenVINO (or a VM's CPUID masking) cannot use it
    return isa


@functools.lru_cache(maxsize=1)
def _core():
    return _openvino().Core()


class OpenVinoBackend(Backend):
    """Runs an OpenVINO IR model on the CPU plugin.

    Args:
        path: the ``.xml`` file (its ``.bin`` beside it, both hashed in the manifest).
        model: its manifest entry; ``extra["bf16_gate"]`` is the export's fidelity gate.
        threads: inference threads (None: OpenVINO's default, one per core).
        precision: "fp32", "bf16" or "auto" (``precision.choose``).
        cache: the model-cache base folder (None: ``cache_root``).
    """

    name = "openvino"
    format = "openvino"

    def __init__(self, path: Path, model: ModelFile, threads: int | None = None, precision: str = "fp32",
                 cache: Path | None = None):
        super().__init__(path, model)
        self.threads, self.cache = threads, cache
        self.choice = choose(precision, machine_bf16(), model.extra.get("bf16_gate"))
        self.compiled = self.request = None
        self.compile_seconds: float | None = None
        self.cache_state = ""

    @classmethod
    def model_files(cls, manifest: Manifest, role: str, precision: str) -> list[ModelFile]:
        return manifest.select(role, cls.format, "fp32")  # fp32 weights; the compute precision is a hint

    @classmethod
    def from_options(cls, path: Path, model: ModelFile, options) -> OpenVinoBackend:
        return cls(path, model, threads=options.threads, precision=parse_precision(options.precision)[model.role],
                   cache=options.cache_dir)

    def describe(self) -> dict:
        """What ran, for the report: precision and why, compile time and cache."""
        return {"file": self.path.name, "precision": self.choice.precision, "why": self.choice.reason,
                "compile_seconds": self.compile_seconds, "cache": self.cache_state}

    def _activate(self) -> None:
        config = {"INFERENCE_PRECISION_HINT": OV_PRECISION[self.choice.precision], "PERFORMANCE_HINT": "LATENCY"}
        if self.threads:
            config["INFERENCE_NUM_THREADS"] = int(self.threads)
        cache = BlobCache(cache_dir(self.cache, version()))
        key = entry_key(*(sha for _, sha in self.model.hashed_files()), self.choice.precision, version(), cpu_key(),
                        str(self.threads))
        start = time.perf_counter()
        compiled = self._load(cache, key, config)
        self.compiled = compiled if compiled is not None else self._compile(cache, key, config)
        self.compile_seconds = time.perf_counter() - start
        self.request = self.compiled.create_infer_request()

    def _load(self, cache: BlobCache, key: str, config: dict):
        """The compiled model from the cache, or None (absent, damaged, or refused: removed)."""
        blob = cache.load(key) if cache.usable else None
        if blob is None:
            return None
        try:
            compiled = _core().import_model(blob, "CPU", config)
        except RuntimeError as exc:  # intact but refused (another build of this version): rebuild it
            log.warning("%s: OpenVINO refused the cached model (%s); compiling again", cache.path(key),
                        str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            cache.path(key).unlink(missing_ok=True)
            return None
        self.cache_state = f"loaded from {cache.path(key)}"
        return compiled

    def _compile(self, cache: BlobCache, key: str, config: dict):
        """Compile the IR and store the result in the cache (said once per folder where it cannot)."""
        compiled = _core().compile_model(str(self.path), "CPU", config)
        if cache.usable and cache.store(key, _payload(compiled.export_model())):
            self.cache_state = f"compiled into {cache.path(key)}"
            return compiled
        self.cache_state = f"off ({cache.problem})"
        if cache.folder not in _CACHE_WARNED:  # once per folder, not once per network
            _CACHE_WARNED.add(cache.folder)
            log.warning("OpenVINO model cache off: %s; every run compiles again (set L2S_CACHE_DIR or --cache-dir "
                        "to a writable folder)", cache.problem)
        return compiled

    def release_memory(self) -> None:
        # The compiled model keeps its intermediate buffers (the paper 3D net at batch 2: 2.4 GB
        # in fp32) until released; held by both networks they added up to 4.3 GB in a study
        # (--low-memory releases them after each stage: 3.0 GB, 6% slower).
        if self.compiled is not None:
            self.compiled.release_memory()

    def _deactivate(self) -> None:
        self.request = self.compiled = None

    def _infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        inputs = {name: np.ascontiguousarray(array) for name, array in feed.items()}
        self.request.infer(inputs)
        return {name: np.array(self.request.get_tensor(name).data, dtype=np.float32, copy=True)
                for name in self.output_names}

    @staticmethod
    def version() -> str:
        return version()


def _payload(exported) -> bytes:
    """``export_model``'s result as bytes (documented as bytes; 2026.4 returns a BytesIO)."""
    return exported.getvalue() if hasattr(exported, "getvalue") else bytes(exported)
