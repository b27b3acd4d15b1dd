"""The GPU backends' pure parts (no GPU, no TensorRT here) and ``--backend auto``'s choice."""

import sys
from pathlib import Path

import pytest

from l2s_engine.backends import BackendError, MissingDependencyError, backend_class
from l2s_engine.backends.auto import Probe, choose
from l2s_engine.backends.tensorrt import check_batch, io_plan
from l2s_engine.manifest import Manifest, ModelFile, TensorInfo
from l2s_engine.core import InferOptions
from l2s_engine.spec import preset

WINDOWS = (TensorInfo("windows", "float32", (-1, 2, 32, 48, 40)),)
LOGITS = (TensorInfo("logits", "float32", (-1, 1, 32, 48, 40)),)
PROFILE = {"windows": [[1, 2, 32, 48, 40], [2, 2, 32, 48, 40], [4, 2, 32, 48, 40]]}


def plan_file(role="seg3d", trt="10.9.0.34", cc="9.0", profile=PROFILE) -> ModelFile:
    extra = {"tensorrt_version": trt, "compute_capability": cc, "gpu_name": "NVIDIA H100", "profile": profile}
    return ModelFile(role, 0, "plan", "fp16", f"{role}_fp16.plan", "", WINDOWS, LOGITS, extra)


def manifest(*files: ModelFile) -> Manifest:
    return Manifest(Path("engines"), preset("lite"), files, {})


ONNX = ModelFile("seg3d", 0, "onnx", "fp32", "seg3d.onnx", "", WINDOWS, LOGITS)
PT2 = ModelFile("seg3d", 0, "pt2", "fp32", "seg3d.pt2", "", WINDOWS, LOGITS)


def test_buffers_are_sized_from_the_profile_maximum():
    io = io_plan(plan_file())
    assert io.max_batch == 4
    assert io.input_max == (4, 2, 32, 48, 40) and io.output_max == (4, 1, 32, 48, 40)
    assert io.output_nbytes() == 4 * 32 * 48 * 40 * 4  # float32 logits, by hand


def test_a_plan_without_profile_is_refused_with_the_rebuild_hint():
    with pytest.raises(BackendError, match="no min/opt/max profile.*l2s-export"):
        io_plan(plan_file(profile={}))


def test_batches_outside_the_profile_are_refused():
    io = io_plan(plan_file())
    check_batch(io, (4, 2, 32, 48, 40), "seg3d.plan")
    check_batch(io, (1, 2, 32, 48, 40), "seg3d.plan")
    with pytest.raises(BackendError, match="batch of 5.*1..4.*--batch-2d/--batch-3d"):
        check_batch(io, (5, 2, 32, 48, 40), "seg3d.plan")
    with pytest.raises(BackendError, match="input shape"):
        check_batch(io, (2, 2, 32, 48, 41), "seg3d.plan")


def test_tensorrt_backend_refuses_fp32_the_cpu_and_names_its_extra(monkeypatch):
    monkeypatch.setattr("l2s_engine.backends.gpu.no_cuda_gpu", lambda: None)  # a GPU machine without TensorRT
    cls = backend_class("tensorrt")
    with pytest.raises(BackendError, match="fp16 only"):
        cls.model_files(manifest(plan_file()), "seg3d", "fp32")
    assert cls.model_files(manifest(plan_file(), ONNX), "seg3d", "fp16") == [plan_file()]
    with pytest.raises(BackendError, match="CUDA GPU"):
        cls.from_options(Path("seg3d_fp16.plan"), plan_file(), InferOptions(backend="tensorrt", device="cpu"))
    net = cls.from_options(Path("seg3d_fp16.plan"), plan_file(), InferOptions(backend="tensorrt", device="cuda:1"))
    assert net.device == 1
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(MissingDependencyError, match=r"l2s-engine\[gpu\]"):
        net.activate()


def test_host_backends_refuse_device_calls(tmp_path):
    from .engines import fast_engine
    from l2s_engine.manifest import read_manifest

    m = read_manifest(fast_engine(tmp_path / "e"))
    (model,) = m.select("seg3d", "onnx", "fp32")
    with backend_class("onnxruntime")(m.path(model), model) as net:
        with pytest.raises(BackendError, match="host only"):
            net.infer_device(None, None)


GPU_MACHINE = Probe(gpu=None, tensorrt=None, torch_cuda=None, tensorrt_version="10.9.0.34", compute_capability="9.0")


def test_auto_takes_tensorrt_when_plans_fit():
    choice = choose(manifest(plan_file(), PT2, ONNX), GPU_MACHINE)
    assert (choice.backend, choice.device, choice.precision) == ("tensorrt", "cuda", "fp16")


def test_auto_passes_over_mismatched_plans_to_torch_and_says_why():
    old = plan_file(trt="10.3.0")
    choice = choose(manifest(old, PT2, ONNX), GPU_MACHINE)
    assert (choice.backend, choice.device, choice.precision) == ("torch", "cuda", "fp16")
    assert "built with TensorRT 10.3.0" in choice.reason
    other_gpu = choose(manifest(plan_file(cc="8.6"), PT2), GPU_MACHINE)
    assert other_gpu.backend == "torch" and "compute capability 8.6" in other_gpu.reason


def test_auto_without_a_gpu_runs_onnxruntime_on_the_cpu_and_lists_the_reasons():
    probe = Probe(gpu="CuPy is not installed", tensorrt="the tensorrt package is not installed",
                  torch_cuda="not checked: no GPU")
    choice = choose(manifest(plan_file(), PT2, ONNX), probe)
    assert (choice.backend, choice.device, choice.precision) == ("onnxruntime", "cpu", "fp32")
    assert "tensorrt: CuPy is not installed" in choice.reason and "torch: CuPy is not installed" in choice.reason
    no_programs = choose(manifest(ONNX), Probe(gpu=None, tensorrt="not installed", torch_cuda=None))
    assert no_programs.backend == "onnxruntime" and "no .pt2 programs" in no_programs.reason
    no_plans = choose(manifest(PT2, ONNX), GPU_MACHINE)
    assert no_plans.backend == "torch" and "no TensorRT plans" in no_plans.reason


def test_auto_on_a_cpu_prefers_openvino_where_installed_and_exported():
    import dataclasses

    ir = dataclasses.replace(ONNX, format="openvino", path="seg3d.xml")
    no_gpu = dict(gpu="no CUDA GPU", tensorrt="not installed", torch_cuda="not checked: no GPU")
    choice = choose(manifest(ONNX, ir), Probe(**no_gpu, openvino=None))
    assert (choice.backend, choice.device, choice.precision) == ("openvino", "cpu", "auto")
    not_installed = choose(manifest(ONNX, ir), Probe(**no_gpu, openvino="the openvino package is not installed"))
    assert not_installed.backend == "onnxruntime" and "openvino: the openvino package is not installed" in not_installed.reason
    no_ir = choose(manifest(ONNX), Probe(**no_gpu, openvino=None))
    assert no_ir.backend == "onnxruntime" and "no OpenVINO IR" in no_ir.reason
    assert choose(manifest(plan_file(), ONNX, ir), dataclasses.replace(GPU_MACHINE, openvino=None)).backend == "tensorrt"
