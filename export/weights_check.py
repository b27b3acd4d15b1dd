"""A weights directory checked before anything is exported: each fault one named error.

``config.json`` must be a JSON object with a ``spec`` object; each ``*.safetensors`` must be
a whole safetensors file whose tensors are exactly those of the network its spec builds
(names and shapes) and finite. The networks are built on torch's ``meta`` device for their
shapes, so the check allocates no weights; the stored tensors are read once for finiteness.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from l2s_engine.spec import Spec

from .checks import ExportError

RETRAIN = "re-train it (`l2s-train all --out DIR`) or restore the file from the training run"


def check_config_json(weights_dir: Path) -> dict:
    """The parsed config.json of ``weights_dir``, which must be an object with a ``spec`` object.

    Raises:
        ExportError: missing, unreadable, not JSON, not an object, or without a spec object.
    """
    path = Path(weights_dir) / "config.json"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ExportError(f"{path}: missing: not a weights directory; {RETRAIN}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ExportError(f"{path}: unreadable ({exc}); {RETRAIN}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ExportError(f"{path}: not JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); {RETRAIN}") from exc
    if not isinstance(data, dict):
        raise ExportError(f"{path}: a JSON {type(data).__name__}, not an object with a 'spec'; {RETRAIN}")
    if not isinstance(data.get("spec"), dict):
        raise ExportError(f"{path}: no 'spec' object (found {type(data.get('spec')).__name__}); {RETRAIN}")
    return data


def expected_tensors(role: str, spec: Spec, config: Path) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor the ``role`` network of ``spec`` holds.

    Raises:
        ExportError: the spec in ``config`` cannot build the network.
    """
    from l2s_training.models import Loc2DNet, Seg3DNet

    try:
        with torch.device("meta"):
            model = {"loc2d": Loc2DNet, "seg3d": Seg3DNet}[role](getattr(spec, role))
    except Exception as exc:  # noqa: BLE001 - any failure to build is the config's fault; one named error
        raise ExportError(f"{config}: its spec cannot build the {role} network ({type(exc).__name__}: {exc}); "
                          f"{RETRAIN}") from exc
    return {name: tuple(t.shape) for name, t in model.state_dict().items()}


def check_weight_file(path: Path, expected: dict[str, tuple[int, ...]]) -> None:
    """Refuse a safetensors file that is truncated or corrupt, that does not hold exactly the
    network's tensors with the network's shapes, or that holds a NaN or infinity.

    Raises:
        ExportError: naming the file, the first offending tensor and its shapes.
    """
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            shapes = {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}
            _compare(path, shapes, expected)
            for name in sorted(shapes):
                tensor = f.get_tensor(name)
                if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                    raise ExportError(f"{path}: tensor {name!r} holds NaN or infinite values; the training "
                                      f"diverged or the file is damaged; {RETRAIN}")
    except (SafetensorError, OSError) as exc:
        raise ExportError(f"{path}: not a whole safetensors file (truncated or corrupt: {exc}); {RETRAIN}") from exc


def _compare(path: Path, found: dict, expected: dict) -> None:
    missing, extra = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
    if missing or extra:
        raise ExportError(f"{path}: its tensors are not those of the network config.json's spec builds "
                          f"(missing {_few(missing)}, unexpected {_few(extra)}); the weights belong to another "
                          "spec: use the config.json they were trained with")
    for name in sorted(expected):
        if found[name] != expected[name]:
            raise ExportError(f"{path}: tensor {name!r} has shape {found[name]}, the network config.json's spec "
                              f"builds has {expected[name]}; the weights belong to another spec (channels, "
                              "levels or slices): use the config.json they were trained with")


def _few(names: list[str]) -> str:
    return "none" if not names else ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def check_weight_files(weights_dirs: list[Path], spec: Spec) -> None:
    """Every fold's ``loc2d``/``seg3d`` safetensors against the networks of ``spec``.

    Raises:
        ExportError: a file is missing, truncated, corrupt, of another spec, or not finite.
    """
    from l2s_training.weights import CONFIG, WEIGHT_FILES

    for role, name in WEIGHT_FILES.items():
        expected = None
        for d in weights_dirs:
            path = Path(d) / name
            if not path.is_file():
                raise ExportError(f"{path}: missing: the weights directory has no {role} network; {RETRAIN}")
            expected = expected or expected_tensors(role, spec, Path(d) / CONFIG)
            check_weight_file(path, expected)
