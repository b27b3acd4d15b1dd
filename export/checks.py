"""Checks before an export: flags, weights directories, output folder."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from l2s_engine.errors import L2SError, OutputError

PARITY_LIMIT = 1e-4


class ExportError(L2SError):
    """The export cannot proceed (missing weights, mismatched folds, failed parity)."""


def parse_profile(text: str) -> tuple[int, int, int]:
    """'MIN,OPT,MAX' batch sizes of a TensorRT optimization profile, checked."""
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or not 1 <= values[0] <= values[1] <= values[2]:
        raise argparse.ArgumentTypeError(f"expected MIN,OPT,MAX with 1 <= MIN <= OPT <= MAX, got {text!r}")
    return values


def parse_spacing(text: str) -> tuple[float, float, float]:
    """--spacing 'Z,Y,X' (mm, numpy order; ``l2s_engine.spec.parse_spacing``)."""
    from l2s_engine.spec import SpecError
    from l2s_engine.spec import parse_spacing as parse

    try:
        return parse(text)
    except SpecError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def check_weights_dirs(dirs: list[Path], spacing_zyx_mm: tuple[float, float, float] | None = None):
    """The spec shared by all fold directories; every directory must be complete.

    Args:
        spacing_zyx_mm: the network spacing for weights whose config.json predates the field
            (``--spacing``); it goes into the manifest, the weights are not changed.

    Raises:
        ExportError: a directory or file is missing, a config.json records no spacing and none
            is given, or the folds disagree on the spec.
    """
    from l2s_engine.spec import SpecError
    from l2s_training.weights import CONFIG, WEIGHT_FILES, read_config

    from .weights_check import RETRAIN, check_config_json

    specs = []
    for d in dirs:
        missing = [name for name in (CONFIG, *WEIGHT_FILES.values()) if not (d / name).is_file()]
        if missing:
            raise ExportError(f"{d}: weights directory is missing {', '.join(missing)}; train it with "
                              "`l2s-train all --out DIR`")
        check_config_json(d)  # a readable JSON object with a spec object, or one named error
        try:
            specs.append(read_config(d, spacing_zyx_mm)[0])
        except SpecError as exc:
            raise ExportError(f"{d / CONFIG}: {exc}") from exc
        except (TypeError, ValueError, AttributeError) as exc:  # a spec field of the wrong JSON type
            raise ExportError(f"{d / CONFIG}: invalid spec ({type(exc).__name__}: {exc}); {RETRAIN}") from exc
    first = specs[0]
    for d, spec in zip(dirs[1:], specs[1:]):
        if (spec.loc2d, spec.seg3d) != (first.loc2d, first.seg3d):
            raise ExportError(f"{d}: its networks differ from those of {dirs[0]}; folds of one ensemble "
                              "must share one architecture and preprocessing")
        if spec.spacing_zyx_mm != first.spacing_zyx_mm:
            raise ExportError(f"{d}: trained at spacing {spec.spacing_zyx_mm} (z, y, x mm), {dirs[0]} at "
                              f"{first.spacing_zyx_mm}; folds of one ensemble must share the network spacing")
    return first


def check_writable(out: Path) -> None:
    """Refuse, before any work, a target the export could not replace: a file, a folder of
    files that is not an engine directory (``staging.check_target``), or a parent folder where
    the engine directory cannot be built beside it (``out`` itself is not created here).

    Raises:
        OutputError: naming the folder and the reason; NotAnEngineDirError for user files.
    """
    from .staging import check_target

    parent = check_target(out).parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        probe = parent / f".{Path(out).name}.l2s-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise OutputError(f"{out}: cannot write the engine directory here ({exc.strerror}); choose -o elsewhere") from exc
