"""One resolution of a run (``core.resolve_run``): every choice in one place, each one checked
against a hand-written expectation, and recorded in report.json."""

import dataclasses
import json

import pytest

pytest.importorskip("onnx")

from l2s_engine.backends import BackendError  # noqa: E402
from l2s_engine.backends.auto import Probe  # noqa: E402
from l2s_engine.core import InferOptions, resolve_run  # noqa: E402
from l2s_engine.manifest import read_manifest  # noqa: E402
from l2s_engine.precision import PrecisionError  # noqa: E402

from .engines import fast_engine  # noqa: E402

NO_GPU = Probe(gpu="no CUDA GPU (test)", tensorrt="not installed (test)", torch_cuda="not checked: no GPU",
               openvino="not installed (test)")
GPU = Probe(gpu=None, tensorrt="not installed (test)", torch_cuda=None, openvino=None)


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return read_manifest(fast_engine(tmp_path_factory.mktemp("engine")))


def with_rule(manifest, rule):
    spec = dataclasses.replace(manifest.spec, fusion=dataclasses.replace(manifest.spec.fusion, rule=rule))
    return dataclasses.replace(manifest, spec=spec)


@pytest.mark.parametrize("asked,expected", [
    # (backend, device, precision, full_cue, keep_maps) -> (backend, device, precision, executor, full_cue, maps)
    (("onnxruntime", None, "fp32", False, False), ("onnxruntime", "cpu", "fp32", "host", False, True)),
    (("onnxruntime", None, None, True, False), ("onnxruntime", "cpu", "fp32", "host", True, True)),
    (("openvino", None, None, False, False), ("openvino", "cpu", "auto", "host", False, True)),
    (("tensorrt", None, None, False, False), ("tensorrt", "cuda", "fp16", "device", True, False)),
    (("tensorrt", "cuda:1", None, False, True), ("tensorrt", "cuda:1", "fp16", "device", True, True)),
    (("torch", "cuda", "fp16", False, False), ("torch", "cuda", "fp16", "device", True, False)),
    (("torch", None, "fp32", False, False), ("torch", "cpu", "fp32", "host", False, True)),
])
def test_each_choice_is_made_once_from_the_flags_and_the_manifest(manifest, asked, expected):
    backend, device, precision, full_cue, keep = asked
    run = resolve_run(InferOptions(backend=backend, device=device, precision=precision, full_cue=full_cue),
                      manifest, keep_maps=keep, probe=NO_GPU)
    o = run.options
    assert (o.backend, o.device, o.precision, run.executor, o.full_cue, run.keep_maps) == expected
    assert o.rule == "paper" and run.chosen_by is None
    # the device executor always computes the whole cue and says so when it was not asked for
    assert bool(run.notes) == (expected[3] == "device" and not full_cue)


def test_auto_is_resolved_with_its_reason_and_the_probe_decides(manifest):
    on_cpu = resolve_run(InferOptions(backend="auto", precision=None), manifest, probe=NO_GPU)
    assert (on_cpu.options.backend, on_cpu.options.device, on_cpu.options.precision, on_cpu.executor) == \
        ("onnxruntime", "cpu", "fp32", "host")
    assert "tensorrt: no CUDA GPU (test)" in on_cpu.chosen_by and "openvino: not installed (test)" in on_cpu.chosen_by
    # a GPU, torch with CUDA, but the engine directory has no .pt2 programs: still the CPU
    no_programs = resolve_run(InferOptions(backend="auto", precision=None), manifest, probe=GPU)
    assert no_programs.options.backend == "onnxruntime" and "no .pt2 programs" in no_programs.chosen_by
    asked = resolve_run(InferOptions(backend="auto", precision="fp32", device="cpu"), manifest, probe=NO_GPU)
    assert asked.options.precision == "fp32" and asked.options.device == "cpu"


def test_the_rule_comes_from_the_manifest_unless_asked_and_decides_the_cue_and_maps(manifest):
    components = with_rule(manifest, "components")
    host = resolve_run(InferOptions(), components)
    assert host.options.rule == "components" and host.full_cue  # the components rule reads the whole cue
    device = resolve_run(InferOptions(backend="tensorrt"), components)
    assert device.keep_maps  # the components rule runs on the host: the maps come back
    asked = resolve_run(InferOptions(rule="paper"), components)
    assert asked.options.rule == "paper" and not asked.full_cue


def test_options_the_device_executor_cannot_honour_are_refused_by_name(manifest):
    with pytest.raises(BackendError, match="--low-memory"):
        resolve_run(InferOptions(backend="tensorrt", low_memory=True), manifest)
    assert resolve_run(InferOptions(low_memory=True), manifest).options.low_memory  # the host's
    with pytest.raises(BackendError, match="--device gpu0"):
        InferOptions(device="gpu0")
    with pytest.raises(PrecisionError, match="bf16 and auto are the openvino backend's"):
        resolve_run(InferOptions(backend="auto", precision="bf16"), manifest, probe=NO_GPU)
    with pytest.raises(BackendError, match="executor must be one of"):
        resolve_run(InferOptions(), manifest, executor="gpu")


def test_options_a_backend_does_not_use_are_named(manifest, tmp_path):
    run = resolve_run(InferOptions(cache_dir=tmp_path, threads=4, backend="tensorrt", full_cue=True), manifest)
    assert any("--cache-dir" in n for n in run.notes) and any("--threads" in n for n in run.notes)
    assert not resolve_run(InferOptions(threads=4), manifest).notes  # onnxruntime uses its threads


def test_a_run_opens_only_its_own_executor(tmp_path, manifest):
    from l2s_engine.executors import open_engine
    from l2s_engine.pipeline import HostEngine

    run = resolve_run(InferOptions(), manifest)
    with open_engine(manifest, run) as engine:
        assert isinstance(engine, HostEngine) and engine.run is run and engine.manifest is manifest
    device_run = resolve_run(InferOptions(backend="tensorrt"), manifest)
    with pytest.raises(BackendError, match="resolved for the device executor cannot open the host one"):
        HostEngine(manifest, device_run)


def test_report_records_the_resolution_and_the_manifest_is_read_once(tmp_path, monkeypatch):
    pytest.importorskip("SimpleITK")
    from l2s_engine import cli, manifest as manifest_module
    from l2s_engine.phantoms import make_phantom
    from l2s_engine.phantoms.files import write_study

    engine_dir = fast_engine(tmp_path / "engine")
    write_study(make_phantom(0, seed=1000, size="tiny"), tmp_path / "in", "autopet")
    reads = []
    real = manifest_module.read_manifest

    def counted(directory, verify=True):
        reads.append(directory)
        return real(directory, verify)

    monkeypatch.setattr(manifest_module, "read_manifest", counted)
    monkeypatch.setattr("l2s_engine.core.read_manifest", counted)
    monkeypatch.setattr("l2s_engine.executors.read_manifest", counted)
    status = cli.infer_main([str(tmp_path / "in"), "--engine", str(engine_dir), "-o", str(tmp_path / "out"),
                             "--backend", "onnxruntime", "--rule", "components", "-q"])
    assert status == 0 and len(reads) == 1
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["run"] == {"backend": "onnxruntime", "device": "cpu", "precision": "fp32", "executor": "host",
                             "maps_kept": True, "full_cue": True, "rule": "components",
                             "backend_chosen_by": None, "notes": []}
