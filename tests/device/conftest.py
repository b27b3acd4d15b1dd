import pytest

from .host_kernels import HostKernels, compile_host_kernels


@pytest.fixture(scope="session")
def host_kernels(tmp_path_factory):
    """kernels.cu built for this CPU (g++)."""
    return HostKernels(compile_host_kernels(tmp_path_factory.mktemp("kernels")))
