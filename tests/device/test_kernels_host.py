"""kernels.cu built for the CPU (g++) against the numpy host path: the kernels' index math,
bounds and float32 arithmetic checked where there is no GPU."""

import pytest

from .checks import CHECKS


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_kernel_matches_numpy(host_kernels, check):
    check(host_kernels)
