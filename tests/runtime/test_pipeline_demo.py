"""The ONNX Runtime pipeline on the exported demo weights against a plain PyTorch pipeline."""

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from l2s_engine.metrics import mask_dice as _dice  # noqa: E402
from l2s_engine.phantoms import make_phantom  # noqa: E402
from l2s_engine.core import InferOptions  # noqa: E402
from l2s_engine.pipeline import HostEngine  # noqa: E402
from l2s_engine.preprocess import intensity_window  # noqa: E402
from l2s_engine.spec import Spec  # noqa: E402
from l2s_training.models import Loc2DNet, Seg3DNet  # noqa: E402
from l2s_training.predict import predict_cue, predict_volume  # noqa: E402
from l2s_training.weights import load_weights, read_config  # noqa: E402

DEMO = Path(__file__).resolve().parents[2] / "weights" / "demo"


def torch_reference_mask(spec: Spec, loc, seg, phantom) -> np.ndarray:
    """PyTorch networks, padded-volume sliding windows, and the paper rule in float64."""
    cue = predict_cue(loc, intensity_window(phantom.pet, *spec.loc2d.suv_window), phantom.geometry, spec.loc2d).astype(np.float64)
    p3d = predict_volume(seg, intensity_window(phantom.pet, *spec.seg3d.suv_window), intensity_window(phantom.ct, *spec.seg3d.ct_window),
                         spec.seg3d, spec.fusion.step_fraction).astype(np.float64)
    f = spec.fusion
    return np.where(cue > f.cue_threshold, p3d > f.low_threshold, p3d > f.high_threshold)


def test_onnxruntime_masks_equal_the_torch_pipeline_and_skipping_air_changes_nothing(demo_engine):
    spec, _ = read_config(DEMO)
    loc = load_weights(Loc2DNet(spec.loc2d), DEMO, "loc2d")
    seg = load_weights(Seg3DNet(spec.seg3d), DEMO, "seg3d")
    reference_voxels = 0
    with HostEngine(demo_engine) as engine, HostEngine(demo_engine, InferOptions(skip_air=False, full_cue=True)) as full:
        for index in (0, 2):  # phantoms with lesions
            phantom = make_phantom(index, seed=1000, size="small")
            ref = torch_reference_mask(spec, loc, seg, phantom)
            got = engine.segment(phantom.pet, phantom.ct, phantom.geometry)
            assert _dice(got.mask, ref) >= 0.999, (phantom.case_id, int(got.mask.sum()), int(ref.sum()))
            everything = full.segment(phantom.pet, phantom.ct, phantom.geometry)
            np.testing.assert_array_equal(got.mask, everything.mask)
            assert got.work["slices_run"] < everything.work["slices_run"]
            reference_voxels += int(ref.sum())
    assert reference_voxels > 0  # the comparison saw lesions


def test_torch_backend_on_the_cpu_gives_the_onnxruntime_mask(demo_engine):
    from l2s_engine.backends import BackendError

    phantom = make_phantom(0, seed=1000, size="small")
    with HostEngine(demo_engine) as ort_engine, HostEngine(demo_engine, InferOptions(backend="torch")) as torch_engine:
        assert torch_engine.describe()["files"] == ["loc2d.pt2", "seg3d.pt2"]
        ref = ort_engine.segment(phantom.pet, phantom.ct, phantom.geometry)
        got = torch_engine.segment(phantom.pet, phantom.ct, phantom.geometry)
    assert ref.mask.sum() > 0 and _dice(got.mask, ref.mask) >= 0.999
    np.testing.assert_allclose(got.p3d, ref.p3d, atol=1e-4)
    with pytest.raises(BackendError, match="fp16 on CUDA only"):
        HostEngine(demo_engine, InferOptions(backend="torch", precision="fp16"))
