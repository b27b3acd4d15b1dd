"""The 2D localisation U-Net: Res2Net-50 (26w x 4s) encoder from timm, U-Net decoder."""

from __future__ import annotations

import timm
import torch
from torch import nn
from torch.nn import functional as F

from l2s_engine.spec import Loc2DSpec

from .seg3d import PRIOR_LOGIT


class ConvBnRelu(nn.Sequential):
    def __init__(self, cin: int, cout: int):
        super().__init__(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class DecoderBlock(nn.Module):
    """x2 upsampling, concatenation with the skip feature, two 3x3 conv + BN + ReLU."""

    def __init__(self, cin: int, cskip: int, cout: int, mode: str):
        super().__init__()
        self.mode = mode
        self.convs = nn.Sequential(ConvBnRelu(cin + cskip, cout), ConvBnRelu(cout, cout))

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        kwargs = {"align_corners": False} if self.mode == "bilinear" else {}
        x = F.interpolate(x, scale_factor=2.0, mode=self.mode, **kwargs)
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.convs(x)


class UnetDecoder(nn.Module):
    """Five decoder stages over encoder features at strides 2..32; the last has no skip."""

    def __init__(self, encoder_channels: list[int], decoder_channels: tuple[int, ...], mode: str):
        super().__init__()
        deep_first = list(reversed(encoder_channels))          # stride 32, 16, 8, 4, 2
        cins = [deep_first[0], *decoder_channels[:-1]]
        skips = [*deep_first[1:], 0]
        self.blocks = nn.ModuleList(DecoderBlock(i, s, o, mode) for i, s, o in zip(cins, skips, decoder_channels))

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        deep_first = list(reversed(features))
        x = deep_first[0]
        for block, skip in zip(self.blocks, [*deep_first[1:], None]):
            x = block(x, skip)
        return x


class Loc2DNet(nn.Module):
    """Coronal PET slices (N, in_slices, H, W) -> lesion logits (N, 1, H, W)."""

    def __init__(self, spec: Loc2DSpec):
        super().__init__()
        self.encoder = timm.create_model(
            "res2net50_26w_4s", pretrained=False, features_only=True, in_chans=spec.in_slices,
            layers=tuple(spec.encoder_layers), channels=tuple(spec.encoder_channels), stem_width=spec.stem_width)
        self.decoder = UnetDecoder(self.encoder.feature_info.channels(), spec.decoder_channels, spec.upsample)
        self.head = nn.Conv2d(spec.decoder_channels[-1], 1, 3, padding=1)
        nn.init.constant_(self.head.bias, PRIOR_LOGIT)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.decoder(self.encoder(x)))


def load_imagenet_encoder(model: Loc2DNet, path: str) -> list[str]:
    """Load timm ImageNet weights of res2net50_26w_4s from a local file into the encoder.

    The first conv is adapted to the input channel count (RGB kernels summed for one channel;
    for C channels repeated and scaled by 3/C). Nothing is downloaded.

    Returns:
        the encoder keys that had no counterpart in the file.
    """
    if str(path).endswith(".safetensors"):
        from safetensors.torch import load_file

        state = load_file(path)
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    conv1 = state.get("conv1.weight")
    cin = model.encoder.conv1.weight.shape[1]
    if conv1 is not None and conv1.shape[1] != cin:
        if cin == 1:
            state["conv1.weight"] = conv1.sum(dim=1, keepdim=True)
        else:
            reps = -(-cin // conv1.shape[1])
            state["conv1.weight"] = conv1.repeat(1, reps, 1, 1)[:, :cin] * (conv1.shape[1] / cin)
    result = model.encoder.load_state_dict(state, strict=False)
    return list(result.missing_keys)
