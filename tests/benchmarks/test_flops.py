"""The benchmark's FLOP counter against hand counts and the figures in REFERENCE.md."""

import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from flops import conv_flops, per_item_flops  # noqa: E402


def test_hand_counted_layers():
    nn = torch.nn
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 1, groups=2))
    # conv 3x3: 8*8 outputs x 4 channels x (1 x 9) MACs; grouped 1x1: 8*8 x 6 x (2 x 1)
    assert conv_flops(net, torch.zeros(1, 1, 8, 8)) == 2 * (64 * 4 * 9 + 64 * 6 * 2)
    up = nn.ConvTranspose3d(4, 2, 2, stride=2)
    # every input element feeds out_channels x 2x2x2 outputs
    assert conv_flops(up, torch.zeros(1, 4, 2, 2, 2)) == 2 * (4 * 8) * (2 * 8)
    assert conv_flops(nn.Linear(5, 3), torch.zeros(2, 5)) == 2 * 2 * 3 * 5


def test_paper_networks_match_the_measured_figures():
    from l2s_engine.spec import preset
    from l2s_export.onnx_graphs import input_shape
    from l2s_training.models import Loc2DNet, Seg3DNet

    spec = preset("paper")
    # REFERENCE.md: 66.6 GFLOP per 320x384 slice, 425 GFLOP per 128x192x160 window
    assert per_item_flops(Loc2DNet(spec.loc2d), input_shape("loc2d", spec)) / 1e9 == pytest.approx(66.6, rel=0.02)
    assert per_item_flops(Seg3DNet(spec.seg3d), input_shape("seg3d", spec)) / 1e9 == pytest.approx(425, rel=0.02)
