"""The weights directory: loc2d.safetensors, seg3d.safetensors and config.json (spec + provenance)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from l2s_engine.spec import Spec, SpecError

CONFIG = "config.json"
WEIGHT_FILES = {"loc2d": "loc2d.safetensors", "seg3d": "seg3d.safetensors"}


def save_weights(model: torch.nn.Module, out_dir: Path, name: str) -> Path:
    """Write a model's state dict as safetensors (atomic)."""
    path = Path(out_dir) / WEIGHT_FILES[name]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(tmp))
    os.replace(tmp, path)
    return path


def load_weights(model: torch.nn.Module, weights_dir: Path, name: str) -> torch.nn.Module:
    """Load safetensors weights into ``model`` (strict)."""
    path = Path(weights_dir) / WEIGHT_FILES[name]
    if not path.exists():
        raise FileNotFoundError(f"{path}: no {name} weights; train them with `l2s-train {name[-2:]}`")
    model.load_state_dict(load_file(str(path)))
    return model


def write_config(out_dir: Path, spec: Spec, provenance: dict[str, Any]) -> Path:
    """Write config.json: the full spec and, per trained network, how it was trained."""
    path = Path(out_dir) / CONFIG
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(json.dumps({"spec": spec.to_dict(), "provenance": provenance}, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return path


def read_config(weights_dir: Path, spacing_zyx_mm: tuple[float, float, float] | None = None
                ) -> tuple[Spec, dict[str, Any]]:
    """(spec, provenance) of a weights directory.

    Args:
        spacing_zyx_mm: the network spacing (z, y, x mm) to use where config.json predates the
            field (``l2s-export --spacing``); the file itself is not changed.

    Raises:
        MissingSpacingError: config.json records no spacing and none is given.
        SpecError: config.json records a spacing that differs from ``spacing_zyx_mm``.
    """
    path = Path(weights_dir) / CONFIG
    if not path.exists():
        raise FileNotFoundError(f"{path}: not a weights directory (no {CONFIG}); train one with l2s-train")
    data = json.loads(path.read_text())
    spec = dict(data["spec"])
    if spacing_zyx_mm is not None:
        recorded = spec.setdefault("spacing_zyx_mm", list(spacing_zyx_mm))
        if not np.allclose(recorded, spacing_zyx_mm, rtol=1e-6, atol=0):
            raise SpecError(f"{path} records the network spacing {tuple(recorded)} (z, y, x mm), not "
                            f"{tuple(spacing_zyx_mm)}: a spacing is stamped only on weights that have none")
    return Spec.from_dict(spec), data.get("provenance", {})
