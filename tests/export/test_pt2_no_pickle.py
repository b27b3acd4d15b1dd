"""The torch backend reads ``*.pt2`` programs without unpickling anything (issue 14, item 3).

``torch.export.load`` unpickles the archive's sample inputs (falling back to
``weights_only=False``), so a ``.pt2`` file could run code in l2s-infer. These tests load
programs with every unpickler made to raise, compare the outputs with the PyTorch module the
program was exported from, and show that a planted pickle runs under ``torch.export.load`` but
not under the runtime's reader.
"""

import dataclasses
import io
import json
import os
import pickle
import zipfile

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from l2s_engine.backends import BackendError  # noqa: E402
from l2s_engine.backends.pt2 import ProgramError, load_program  # noqa: E402
from l2s_engine.backends.torchrt import TorchBackend  # noqa: E402
from l2s_engine.manifest import ModelFile, TensorInfo  # noqa: E402
from l2s_engine.spec import preset  # noqa: E402
from l2s_export.torch_program import export_pt2  # noqa: E402
from l2s_training.models import Seg3DNet  # noqa: E402

SPEC = dataclasses.replace(preset("lite"), seg3d=dataclasses.replace(preset("lite").seg3d, patch=(16, 16, 16)))
SHAPE = (-1, 2, *SPEC.seg3d.patch)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(module, our .pt2, torch's default .pt2 with its pickled sample inputs)."""
    torch.manual_seed(0)
    model = Seg3DNet(SPEC.seg3d).eval()
    folder = tmp_path_factory.mktemp("pt2")
    ours = export_pt2(model, "seg3d", SPEC, folder / "seg3d.pt2")
    sample = torch.zeros(2, 2, *SPEC.seg3d.patch)
    program = torch.export.export(model, (sample,), dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=8)},))
    default = folder / "default.pt2"
    torch.export.save(program, str(default))
    return model, ours, default


def _raise(*args, **kwargs):
    raise AssertionError("something was unpickled")


@pytest.fixture
def no_unpickling(monkeypatch):
    """Every way torch or Python unpickles, made to raise."""
    for name in ("load", "loads", "_load", "_loads", "Unpickler", "_Unpickler"):
        monkeypatch.setattr(pickle, name, _raise)
    monkeypatch.setattr(torch, "load", _raise)
    monkeypatch.setattr(torch.serialization, "load", _raise)
    import torch._weights_only_unpickler as restricted

    monkeypatch.setattr(restricted, "load", _raise)
    monkeypatch.setattr(restricted, "Unpickler", _raise)
    monkeypatch.setattr(torch._C, "_pickle_load_obj", _raise, raising=False)


def _entry(path) -> ModelFile:
    return ModelFile("seg3d", 0, "pt2", "fp32", path.name, "", (TensorInfo("windows", "float32", SHAPE),),
                     (TensorInfo("logits", "float32", (-1, 1, *SHAPE[2:])),))


@pytest.mark.parametrize("which", ["ours", "default"])
def test_the_torch_backend_runs_programs_with_unpickling_disabled(exported, no_unpickling, which):
    model, ours, default = exported
    path = ours if which == "ours" else default  # torch's own archives too: the sample inputs are skipped
    x = np.random.default_rng(1).uniform(-1, 1, (3, 2, *SPEC.seg3d.patch)).astype(np.float32)
    with torch.no_grad():
        reference = model(torch.from_numpy(x)).numpy()  # the module the program was exported from
    with TorchBackend(path, _entry(path), device="cpu") as backend:
        got = backend.infer({"windows": x})["logits"]
    assert got.shape == (3, 1, *SPEC.seg3d.patch)
    assert np.abs(got - reference).max() <= 1e-5


def test_torch_export_load_does_unpickle(exported, no_unpickling):
    """The patch above does catch torch's loader: what the runtime no longer calls."""
    with pytest.raises(AssertionError, match="something was unpickled"):
        torch.export.load(str(exported[2]))


def _rewrite(src, dst, replace: dict, add: dict | None = None) -> None:
    """Copy the zip ``src`` to ``dst`` with the records whose name ends in a key of ``replace``
    replaced (bytes, or a function of the old bytes), and the records of ``add`` added."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        root = zin.namelist()[0].split("/")[0]
        for info in zin.infolist():
            data = zin.read(info.filename)
            for tail, new in replace.items():
                if info.filename.endswith(tail):
                    data = new(data) if callable(new) else new
            zout.writestr(info.filename, data)
        for name, data in (add or {}).items():
            zout.writestr(f"{root}/{name}", data)


class _Planted:
    """A pickle that creates a folder when it is loaded: code from the file, run by the loader."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_a_planted_pickle_runs_under_torch_export_load_but_not_here(exported, tmp_path):
    marker = tmp_path / "ran"
    buffer = io.BytesIO()
    torch.save(_Planted(marker), buffer)
    evil = tmp_path / "evil.pt2"
    _rewrite(exported[2], evil, {"data/sample_inputs/model.pt": buffer.getvalue()})
    program = load_program(evil)
    assert not marker.exists()
    x = torch.zeros(1, 2, *SPEC.seg3d.patch)
    with torch.no_grad():
        assert torch.equal(program.module()(x), exported[0](x))
    try:  # torch's loader: weights_only fails, then it unpickles for real
        torch.export.load(str(evil))
    except Exception:  # noqa: BLE001 - what it raises afterwards does not matter here
        pass
    assert marker.exists()


def _pickled_weight(data: bytes) -> bytes:
    config = json.loads(data)
    config["config"][sorted(config["config"])[0]]["use_pickle"] = True
    return json.dumps(config).encode()


def _opaque_constant(data: bytes) -> bytes:
    config = json.loads(data)
    config["config"]["planted"] = {"path_name": "opaque_obj_0", "is_param": False, "use_pickle": False,
                                   "tensor_meta": None}
    return json.dumps(config).encode()


@pytest.mark.parametrize("kind, fqn, record", [("weight", "down.0.0.weight", "data/weights/weight_0"),
                                               ("constant", "planted", "data/constants/opaque_obj_0")])
def test_pickled_payloads_are_refused_by_name(exported, tmp_path, no_unpickling, kind, fqn, record):
    bad = tmp_path / "bad.pt2"
    if kind == "weight":
        _rewrite(exported[1], bad, {"data/weights/model_weights_config.json": _pickled_weight})
    else:
        _rewrite(exported[1], bad, {"data/constants/model_constants_config.json": _opaque_constant},
                 {"data/constants/opaque_obj_0": pickle.dumps(0)})
    with pytest.raises(ProgramError, match=rf"bad.pt2: '{fqn}' is stored as a pickle \({record}\), which the "
                                           r"torch backend never loads; re-export"):
        load_program(bad)


def test_a_damaged_archive_is_a_named_error(exported, tmp_path):
    cut = tmp_path / "cut.pt2"
    cut.write_bytes(exported[1].read_bytes()[:5000])
    with pytest.raises(BackendError, match="cut.pt2: not a torch.export archive"):
        load_program(cut)
    missing = tmp_path / "nomodel.pt2"
    _rewrite(exported[1], missing, {"models/model.json": b"[1, 2]"})
    with pytest.raises(ProgramError, match="nomodel.pt2: the program's JSON is unreadable"):
        load_program(missing)
