"""kernels.cu on the GPU (CuPy: the fatbin when built, else NVRTC) against the numpy host path."""

import pytest

from .checks import CHECKS
from .gpu import cupy_or_skip

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def gpu_kernels():
    cupy_or_skip()
    from l2s_engine.cuda.kernels import CupyKernels

    return CupyKernels()


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_kernel_matches_numpy(gpu_kernels, check):
    check(gpu_kernels)
    gpu_kernels.xp.cuda.get_current_stream().synchronize()
