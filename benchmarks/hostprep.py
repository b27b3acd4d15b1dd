"""Running the benchmarks from a bare checkout (a GPU host where this project is not installed).

``import_path`` makes the project's packages importable without installing them; and
``ensure_installed`` installs a missing pure-Python tool (pytest, MONAI) from wheels carried
in ``.gpu-wheels/`` (no index needed), or says how to get them.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WHEELS = ROOT / ".gpu-wheels"


def import_path() -> str:
    """Make l2s_engine, l2s_export and l2s_training importable (in this process and in the
    processes it starts) when the project is not installed; returns what was added ("" if
    nothing was needed)."""
    try:
        import l2s_export  # noqa: F401
        import l2s_training  # noqa: F401

        return ""
    except ImportError:
        pass
    links = Path(tempfile.mkdtemp(prefix="l2s-path-"))
    (links / "l2s_export").symlink_to(ROOT / "export")
    (links / "l2s_training").symlink_to(ROOT / "training")
    extra = f"{ROOT}{os.pathsep}{links}"
    sys.path[:0] = [str(ROOT), str(links)]
    os.environ["PYTHONPATH"] = extra + (os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else "")
    return extra


def ensure_installed(module: str, requirement: str | None = None) -> str | None:
    """None when ``module`` imports (installing ``requirement`` from ``.gpu-wheels/`` if it
    was carried there), else a sentence saying how to get it."""
    if importlib.util.find_spec(module) is not None:
        return None
    requirement = requirement or module
    if WHEELS.is_dir():
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--find-links", str(WHEELS),
                        requirement], check=False)
        importlib.invalidate_caches()
        if importlib.util.find_spec(module) is not None:
            return None
    return (f"{module} is not installed here; install {requirement}, or on a machine with PyPI run "
            f"`pip download -d .gpu-wheels {requirement}` in the repository and carry .gpu-wheels")
