"""benchmarks/hostprep.py: what a bare GPU host is told when a tool is missing."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

from hostprep import ensure_installed  # noqa: E402


def test_a_module_that_imports_needs_nothing():
    assert ensure_installed("json") is None


def test_a_missing_module_names_the_requirement_and_the_wheels_folder():
    message = ensure_installed("l2s_no_such_module", "l2s-no-such-package")
    assert "l2s_no_such_module is not installed" in message
    assert "pip download -d .gpu-wheels l2s-no-such-package" in message
