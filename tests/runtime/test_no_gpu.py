"""On a machine without a CUDA GPU, the GPU paths say "no CUDA GPU" first (issue 14).

Before this, ``--backend tensorrt`` on such a machine talked about missing plans (or a missing
tensorrt package). The driver is asked directly (``backends.gpu``); these tests pin the
answer where they need a given machine, and check the real answer against the machine's
own evidence where they do not.
"""

import ctypes
import ctypes.util
import os
import sys
from pathlib import Path

import pytest

from l2s_engine.backends import BackendError, MissingDependencyError, backend_class, gpu
from l2s_engine.backends.base import NoCudaGpuError
from l2s_engine.manifest import Manifest, ModelFile, TensorInfo
from l2s_engine.spec import preset

NO_DRIVER = "the NVIDIA driver (libcuda.so.1) is not installed"
PLAN = ModelFile("seg3d", 0, "plan", "fp16", "seg3d_fp16.plan", "",
                 (TensorInfo("windows", "float32", (-1, 2, 32, 32, 32)),),
                 (TensorInfo("logits", "float32", (-1, 1, 32, 32, 32)),),
                 {"tensorrt_version": "10.9.0.34", "compute_capability": "9.0",
                  "profile": {"windows": [[1, 2, 32, 32, 32], [2, 2, 32, 32, 32], [4, 2, 32, 32, 32]]}})


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(gpu, "no_cuda_gpu", lambda: NO_DRIVER)
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # nor TensorRT, nor CuPy: the GPU is said first
    monkeypatch.setitem(sys.modules, "cupy", None)


def test_l2s_infer_backend_tensorrt_says_no_cuda_gpu_in_one_line(no_gpu, tmp_path, capsys):
    pytest.importorskip("onnx")
    from l2s_engine.cli import infer_main

    from .engines import fast_engine

    engine = fast_engine(tmp_path / "engine")  # ONNX graphs only: no plans either
    study = tmp_path / "in"
    study.mkdir()
    assert infer_main(["--engine", str(engine), str(study), "-o", str(tmp_path / "out"), "--backend", "tensorrt"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("l2s-infer: no CUDA GPU: the tensorrt backend runs on an NVIDIA GPU, and " + NO_DRIVER)
    assert "--backend onnxruntime" in err and "\n" not in err
    assert "plan" not in err and "pip install" not in err  # not the plans, not the tensorrt package


def test_the_tensorrt_backend_checks_the_gpu_before_its_package(no_gpu, monkeypatch):
    cls = backend_class("tensorrt")
    manifest = Manifest(Path("engine"), preset("lite"), (PLAN,), {})
    with pytest.raises(NoCudaGpuError, match="no CUDA GPU: the tensorrt backend"):
        cls.model_files(manifest, "seg3d", "fp16")  # what opening an engine asks first
    net = cls(Path("seg3d_fp16.plan"), PLAN)
    with pytest.raises(NoCudaGpuError, match=NO_DRIVER.replace("(", r"\(").replace(")", r"\)")):
        net.activate()
    # with a GPU, the missing package is what is said
    monkeypatch.setattr(gpu, "no_cuda_gpu", lambda: None)
    assert cls.model_files(manifest, "seg3d", "fp16") == [PLAN]
    with pytest.raises(MissingDependencyError, match=r"needs tensorrt.*l2s-engine\[gpu\]"):
        net.activate()


def test_the_gpu_pipeline_says_no_cuda_gpu_before_cupy(no_gpu):
    from l2s_engine.cuda.device import CudaDevice

    with pytest.raises(NoCudaGpuError, match=r"no CUDA GPU: the GPU pipeline \(--device cuda:1\)"):
        CudaDevice(1)


class _Driver:
    """A stand-in for libcuda: cuInit's status and the device count it reports."""

    def __init__(self, init: int, count: int = 0):
        self.init, self.count = init, count

    def cuInit(self, flags):  # noqa: N802 - the driver API's name
        return self.init

    def cuDeviceGetCount(self, out):  # noqa: N802
        ctypes.cast(out, ctypes.POINTER(ctypes.c_int)).contents.value = self.count
        return 0


@pytest.mark.parametrize("driver, words", [
    (None, "the NVIDIA driver (libcuda.so.1) is not installed"),
    (_Driver(100), "the NVIDIA driver finds no CUDA device (CUDA_VISIBLE_DEVICES='')"),
    (_Driver(999), "the NVIDIA driver did not start (cuInit error 999) (CUDA_VISIBLE_DEVICES='')"),
    (_Driver(0, count=0), "the NVIDIA driver reports no CUDA device (CUDA_VISIBLE_DEVICES='')"),
    (_Driver(0, count=2), None),
])
def test_the_driver_answer(monkeypatch, driver, words):
    monkeypatch.setattr(gpu, "_load_driver", lambda: driver)
    monkeypatch.setattr(gpu, "DRIVER_LIBRARY", "libcuda.so.1")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert gpu.no_cuda_gpu() == words
    if words is None:
        gpu.require_cuda_gpu("the tensorrt backend")  # no error
    else:
        with pytest.raises(BackendError, match="no CUDA GPU"):
            gpu.require_cuda_gpu("the tensorrt backend")


def test_the_real_answer_agrees_with_the_machine():
    """Independent evidence: the driver's files. Without them, there is no GPU to find."""
    driver_files = Path("/proc/driver/nvidia/gpus").is_dir() or ctypes.util.find_library("cuda") is not None
    if not sys.platform.startswith("linux"):
        pytest.skip("the evidence checked here is Linux's")
    if driver_files:
        gpus = sorted(os.listdir("/proc/driver/nvidia/gpus")) if Path("/proc/driver/nvidia/gpus").is_dir() else []
        if gpus and os.environ.get("CUDA_VISIBLE_DEVICES", "0") not in ("", "-1"):
            assert gpu.no_cuda_gpu() is None, gpus
        else:
            pytest.skip("an NVIDIA driver without a listed GPU: no independent answer here")
    else:
        assert gpu.no_cuda_gpu() == "the NVIDIA driver (libcuda.so.1) is not installed"


def test_backend_auto_names_the_missing_gpu_not_cupy(monkeypatch):
    from l2s_engine.backends.auto import probe_machine

    monkeypatch.setattr(gpu, "no_cuda_gpu", lambda: NO_DRIVER)
    probe = probe_machine()
    assert probe.gpu == f"no CUDA GPU ({NO_DRIVER})" and probe.torch_cuda == "not checked: no GPU"
