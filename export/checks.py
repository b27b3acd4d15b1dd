"""Checks before an export: flags, weights directories, output folder."""

from __future__ import annotations

import argparse
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


def check_weights_dirs(dirs: list[Path]):
    """The spec shared by all fold directories; every directory must be complete.

    Raises:
        ExportError: a directory or file is missing, or the folds disagree on the spec.
    """
    from l2s_engine.spec import SpecError
    from l2s_training.weights import CONFIG, WEIGHT_FILES, read_config

    specs = []
    for d in dirs:
        missing = [name for name in (CONFIG, *WEIGHT_FILES.values()) if not (d / name).is_file()]
        if missing:
            raise ExportError(f"{d}: weights directory is missing {', '.join(missing)}; train it with "
                              "`l2s-train all --out DIR`")
        try:
            specs.append(read_config(d)[0])
        except SpecError as exc:
            raise ExportError(f"{d / CONFIG}: {exc}") from exc
    first = specs[0]
    for d, spec in zip(dirs[1:], specs[1:]):
        if (spec.loc2d, spec.seg3d) != (first.loc2d, first.seg3d):
            raise ExportError(f"{d}: its networks differ from those of {dirs[0]}; folds of one ensemble "
                              "must share one architecture and preprocessing")
    return first


def check_writable(out: Path) -> None:
    """Create ``out`` and prove a file can be written there (OutputError otherwise)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".l2s-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise OutputError(f"{out}: cannot write the engine directory here ({exc.strerror}); choose -o elsewhere") from exc
