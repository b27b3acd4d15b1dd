"""Skip helpers for the `gpu` tests: they run only where CuPy sees a CUDA GPU."""

from __future__ import annotations

import pytest


def cupy_or_skip():
    """CuPy with at least one visible GPU, else skip the test with the reason."""
    cp = pytest.importorskip("cupy", reason="CuPy is not installed (pip install 'l2s-engine[gpu]')")
    try:
        count = cp.cuda.runtime.getDeviceCount()
    except Exception as exc:  # noqa: BLE001 - no driver, no device: skip either way
        pytest.skip(f"no CUDA GPU: {exc}")
    if count < 1:
        pytest.skip("no CUDA GPU visible")
    return cp
