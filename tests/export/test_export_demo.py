"""l2s-export on the committed demo weights, and export parity for both presets."""

import hashlib
import json
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxconverter_common")

from l2s_engine.manifest import ManifestError, read_manifest  # noqa: E402
from l2s_engine.spec import preset  # noqa: E402
from l2s_export.checks import PARITY_LIMIT  # noqa: E402
from l2s_export.cli import main  # noqa: E402
from l2s_export.onnx_graphs import export_fp32  # noqa: E402
from l2s_export.parity import max_probability_difference  # noqa: E402
from l2s_export.pipeline import parity_batches  # noqa: E402
from l2s_training.models import Loc2DNet, Seg3DNet  # noqa: E402

DEMO = Path(__file__).resolve().parents[2] / "weights" / "demo"


@pytest.fixture
def engine_dir(demo_engine):
    return demo_engine


def test_manifest_hashes_match_the_files(engine_dir):
    data = json.loads((engine_dir / "manifest.json").read_text())
    names = sorted(f["path"] for f in data["files"])
    assert names == ["loc2d.onnx", "loc2d.pt2", "loc2d.xml", "loc2d_fp16.onnx", "seg3d.onnx", "seg3d.pt2", "seg3d.xml",
                     "seg3d_fp16.onnx"]
    for entry in data["files"]:
        assert hashlib.sha256((engine_dir / entry["path"]).read_bytes()).hexdigest() == entry["sha256"]
        for name, sha in entry.get("companions", []):  # the IR's weights
            assert entry["format"] == "openvino" and name == entry["path"].replace(".xml", ".bin")
            assert hashlib.sha256((engine_dir / name).read_bytes()).hexdigest() == sha
        if entry["precision"] == "fp32":  # the fp32 ONNX graph, its IR and the torch program
            assert entry["extra"]["max_abs_prob_diff_vs_torch_fp32"] <= PARITY_LIMIT
    manifest = read_manifest(engine_dir)
    assert manifest.spec.loc2d == preset("lite").loc2d and manifest.spec.seg3d == preset("lite").seg3d


def test_fp16_pipeline_masks_agree_with_fp32(engine_dir):
    studies = json.loads((engine_dir / "manifest.json").read_text())["info"]["fp16_agreement"]["studies"]
    assert len(studies) == 3
    assert all(s["mask_dice"] >= 0.995 and s["p3d_low_mask_dice"] >= 0.995 for s in studies), studies
    assert sum(s["p3d_low_mask_voxels_fp32"] for s in studies) > 0  # not only empty masks compared
    assert sum(s["mask_voxels_fp32"] > 0 for s in studies) >= 2


def test_torch_program_runs_any_batch_without_the_training_code(engine_dir):
    import numpy as np
    import torch

    from l2s_export.torch_program import load_pt2

    module = load_pt2(engine_dir / "seg3d.pt2")
    with torch.no_grad():
        for batch in (1, 3):
            x = torch.zeros(batch, 2, *preset("lite").seg3d.patch)
            y = module(x)
            assert tuple(y.shape) == (batch, 1, *preset("lite").seg3d.patch)
            assert np.isfinite(y.numpy()).all()


@pytest.mark.parametrize("name", ["seg3d_fp16.onnx", "seg3d.bin"])  # a model file; an IR's weights (a companion)
def test_a_tampered_file_is_refused_by_name(engine_dir, tmp_path, name):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(engine_dir, copy)
    with open(copy / name, "r+b") as f:
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ManifestError, match=rf"{name.replace('.', '[.]')}: contents differ"):
        read_manifest(copy)


def test_missing_weights_are_a_clear_error(tmp_path, capsys):
    assert main([str(tmp_path / "nowhere"), "-o", str(tmp_path / "e"), "--no-tensorrt"]) == 2
    assert "missing config.json" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("name", ["lite", "paper"])
@pytest.mark.parametrize("role", ["loc2d", "seg3d"])
def test_onnx_runtime_matches_pytorch(tmp_path, name, role):
    import torch

    spec = preset(name)
    torch.manual_seed(0)
    model = (Loc2DNet(spec.loc2d) if role == "loc2d" else Seg3DNet(spec.seg3d)).eval()
    path = export_fp32(model, role, spec, tmp_path / f"{role}.onnx")
    assert max_probability_difference(model, path, parity_batches(role, spec)) <= PARITY_LIMIT


def test_programs_only_export_runs_the_torch_backend_like_onnx_runtime(engine_dir, tmp_path):
    from l2s_engine.phantoms import make_phantom
    from l2s_engine.core import InferOptions
    from l2s_engine.pipeline import HostEngine

    out = tmp_path / "programs"
    assert main([str(DEMO), "-o", str(out), "--programs-only"]) == 0
    manifest = read_manifest(out)
    assert sorted(f.path for f in manifest.files) == ["loc2d.pt2", "seg3d.pt2"]
    phantom = make_phantom(2, seed=1000, size="small")
    with HostEngine(out, InferOptions(backend="torch")) as torch_engine, HostEngine(engine_dir) as ort_engine:
        got = torch_engine.segment(phantom.pet, phantom.ct, phantom.geometry).mask
        ref = ort_engine.segment(phantom.pet, phantom.ct, phantom.geometry).mask
    assert ref.sum() > 0 and int((got != ref).sum()) <= 2
