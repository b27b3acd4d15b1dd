"""The committed demo weights (weights/demo): complete, described, and able to find lesions."""

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from l2s_engine.metrics import case_metrics  # noqa: E402
from l2s_engine.phantoms import make_phantom  # noqa: E402
from l2s_engine.preprocess import intensity_window  # noqa: E402
from l2s_engine.spec import preset  # noqa: E402
from l2s_training.models import Loc2DNet, Seg3DNet  # noqa: E402
from l2s_training.predict import predict_cue, predict_volume  # noqa: E402
from l2s_training.weights import load_weights, read_config  # noqa: E402

DEMO = Path(__file__).resolve().parents[2] / "weights" / "demo"


def test_demo_weights_are_complete_and_small():
    spec, provenance = read_config(DEMO)
    assert (spec.loc2d, spec.seg3d) == (preset("lite").loc2d, preset("lite").seg3d)
    assert {"loc2d", "seg3d"} <= set(provenance)
    assert provenance["seg3d"]["epochs"] == spec.train.epochs_3d and provenance["seg3d"]["fold"] == 0
    assert provenance["loc2d"]["epochs"] == spec.train.epochs_2d and provenance["loc2d"]["iters"] == spec.train.iters_2d
    size = sum(p.stat().st_size for p in DEMO.glob("*") if p.is_file())
    assert size <= 10 * 1024 * 1024


def unseen_dice(predict) -> list[float]:
    """Dice of ``predict(phantom) > threshold`` masks on two phantoms with lesions (seed 4242 was never
    used for training)."""
    dice = []
    for index in (0, 2):
        p = make_phantom(index, seed=4242, size="small")
        dice.append(case_metrics(predict(p), p.seg, p.geometry.voxel_volume_ml).dice)
    return dice


def test_demo_3d_net_finds_lesions_in_unseen_phantoms():
    spec, _ = read_config(DEMO)
    model = load_weights(Seg3DNet(spec.seg3d), DEMO, "seg3d")
    dice = unseen_dice(lambda p: predict_volume(
        model, intensity_window(p.pet, *spec.seg3d.suv_window), intensity_window(p.ct, *spec.seg3d.ct_window),
        spec.seg3d, spec.fusion.step_fraction) > 0.5)
    assert np.mean(dice) >= 0.3, dice


def test_demo_2d_net_localises_lesions_in_unseen_phantoms():
    """The cue lights up: ``cue > 0.5`` against the labels, on studies never trained on."""
    spec, _ = read_config(DEMO)
    model = load_weights(Loc2DNet(spec.loc2d), DEMO, "loc2d")
    dice = unseen_dice(lambda p: predict_cue(
        model, intensity_window(p.pet, *spec.loc2d.suv_window), p.geometry, spec.loc2d) > spec.fusion.cue_threshold)
    assert np.mean(dice) >= 0.2, dice
