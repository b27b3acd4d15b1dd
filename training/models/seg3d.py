"""The 3D segmentation U-Net: PET + CT windows -> lesion logits."""

from __future__ import annotations

import torch
from torch import nn

from l2s_engine.spec import Seg3DSpec

# Lesions are rare: start the output near a 1% prior (logit(0.01)) instead of 50%, so early
# training does not drive every logit far negative, where the sigmoid saturates and the Dice
# gradient vanishes (the prior-probability initialisation of RetinaNet's classifier).
PRIOR_LOGIT = -4.59512


def make_norm(kind: str, channels: int) -> nn.Module:
    """instance: per-channel InstanceNorm (affine); layer: one group over C, D, H, W; batch."""
    if kind == "instance":
        return nn.InstanceNorm3d(channels, affine=True)
    if kind == "layer":
        return nn.GroupNorm(1, channels)
    if kind == "batch":
        return nn.BatchNorm3d(channels)
    raise ValueError(f"unknown normalisation {kind!r}")


class ConvBlock3d(nn.Sequential):
    """Two 3x3x3 conv + normalisation + ReLU."""

    def __init__(self, cin: int, cout: int, norm: str):
        super().__init__(
            nn.Conv3d(cin, cout, 3, padding=1, bias=False), make_norm(norm, cout), nn.ReLU(inplace=True),
            nn.Conv3d(cout, cout, 3, padding=1, bias=False), make_norm(norm, cout), nn.ReLU(inplace=True))


class Seg3DNet(nn.Module):
    """(N, 2, D, H, W) -> (N, 1, D, H, W); D, H, W multiples of 2 ** (levels - 1)."""

    def __init__(self, spec: Seg3DSpec):
        super().__init__()
        widths = [spec.filters * 2**i for i in range(spec.levels)]
        self.down = nn.ModuleList()
        cin = 2
        for w in widths:
            self.down.append(ConvBlock3d(cin, w, spec.norm))
            cin = w
        self.pool = nn.MaxPool3d(2)
        self.up = nn.ModuleList(nn.ConvTranspose3d(w * 2, w, 2, stride=2) for w in reversed(widths[:-1]))
        self.merge = nn.ModuleList(ConvBlock3d(w * 2, w, spec.norm) for w in reversed(widths[:-1]))
        self.head = nn.Conv3d(widths[0], 1, 1)
        nn.init.constant_(self.head.bias, PRIOR_LOGIT)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else self.pool(x))
            skips.append(x)
        x = skips.pop()
        for up, merge in zip(self.up, self.merge):
            x = merge(torch.cat([up(x), skips.pop()], dim=1))
        return self.head(x)
