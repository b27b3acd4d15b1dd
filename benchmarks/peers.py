"""The peer pipelines the benchmark compares with, written plainly on public libraries.

Both run the same PyTorch networks (fp32, eager, CPU or CUDA) on every coronal slice and every
window, with no air skipping, and fuse in numpy with the paper rule. A study at another spacing
than the networks' is resampled to it and the maps back before the fusion, as nnU-Net and MONAI
bundles do, with ``l2s_engine.resample`` (ours: the same grid, so the masks can be compared):

- ``monai``: 2D slices in batches; 3D through ``monai.inferers.sliding_window_inference``
  (Gaussian importance map, overlap 0.5, ``sw_batch_size`` windows per call);
- ``nnunet-style``: one slice and one window at a time (batch 1), windows spread as nnU-Net
  spreads them, logits blended with nnU-Net's Gaussian (sigma = patch / 8, scaled to a
  maximum of 10, zeros replaced by the smallest value), no mirroring.

Each returns the mask, the stage times and the slices/windows it ran.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from torch.nn import functional as F

from l2s_engine.preprocess import coronal_axes
from l2s_engine.resample import CT_ORDER, PET_ORDER, grid_map


class Counting(torch.nn.Module):
    """Wraps a network and counts the samples it was run on."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net, self.items = net, 0

    def forward(self, x):
        self.items += x.shape[0]
        return self.net(x)


def normalise(values: np.ndarray, low: float, high: float) -> np.ndarray:
    return (np.clip(values, low, high).astype(np.float32) - low) * (2.0 / (high - low)) - 1.0


class Peer:
    """Shared parts: the networks, the spec, the 2D stage and the fusion."""

    name = "peer"

    def __init__(self, loc2d: torch.nn.Module, seg3d: torch.nn.Module, spec, device: str = "cpu", batch_2d: int = 16):
        self.loc, self.seg = Counting(loc2d.eval().to(device)), Counting(seg3d.eval().to(device))
        self.spec, self.device, self.batch_2d = spec, device, batch_2d

    def cue(self, pet_suv: np.ndarray, geometry) -> np.ndarray:
        s = self.spec.loc2d
        order = coronal_axes(geometry)  # the study's layout, as the product reads it
        stack = np.transpose(normalise(pet_suv, *s.suv_window), order)
        n, rows, cols = stack.shape
        half = s.in_slices // 2
        r0, r1, c0, c1 = s.crop
        out = np.empty(stack.shape, np.float32)
        with torch.inference_mode():
            for b0 in range(0, n, self.batch_2d):
                idx = np.arange(b0, min(b0 + self.batch_2d, n))
                ctx = np.clip(idx[:, None] + np.arange(-half, half + 1)[None, :], 0, n - 1)
                x = torch.from_numpy(stack[ctx]).to(self.device)
                x = F.interpolate(x, size=tuple(s.resize), mode="bilinear", align_corners=False)[:, :, r0:r1, c0:c1]
                p = torch.sigmoid(self.loc(x))
                frame = torch.zeros((len(idx), 1, *s.resize), device=self.device)
                frame[:, :, r0:r1, c0:c1] = p
                back = F.interpolate(frame, size=(rows, cols), mode="bilinear", align_corners=False)
                out[idx] = back[:, 0].cpu().numpy()
        return np.transpose(out, np.argsort(order))

    def fuse(self, p3d: np.ndarray, cue: np.ndarray) -> np.ndarray:
        f = self.spec.fusion
        return np.where(cue > f.cue_threshold, p3d > f.low_threshold, p3d > f.high_threshold).astype(np.uint8)

    def inputs_3d(self, pet_suv: np.ndarray, ct_hu: np.ndarray) -> np.ndarray:
        s = self.spec.seg3d
        return np.stack([normalise(pet_suv, *s.suv_window), normalise(ct_hu, *s.ct_window)])

    def segment(self, pet_suv: np.ndarray, ct_hu: np.ndarray, geometry) -> tuple[np.ndarray, dict, dict]:
        self.loc.items = self.seg.items = 0
        times = {}
        start = time.perf_counter()
        grid = grid_map(geometry, self.spec.spacing_zyx_mm)
        if grid.resampled:
            pet_suv, ct_hu = grid.to_network(pet_suv, PET_ORDER), grid.to_network(ct_hu, CT_ORDER)
        geometry = grid.network
        times["resample"] = time.perf_counter() - start
        start = time.perf_counter()
        x = self.inputs_3d(pet_suv, ct_hu)
        times["preprocess"] = time.perf_counter() - start
        start = time.perf_counter()
        cue = self.cue(pet_suv, geometry)
        times["2d"] = time.perf_counter() - start
        start = time.perf_counter()
        p3d = self.probabilities(x)
        times["3d"] = time.perf_counter() - start
        start = time.perf_counter()
        p3d, cue = grid.to_native(p3d), grid.to_native(cue)
        times["resample"] += time.perf_counter() - start
        start = time.perf_counter()
        mask = self.fuse(p3d, cue)
        times["fusion"] = time.perf_counter() - start
        return mask, times, {"slices_run": self.loc.items, "windows_run": self.seg.items}

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class MonaiPeer(Peer):
    """MONAI's sliding-window inference, Gaussian mode, overlap 0.5."""

    name = "monai"

    def __init__(self, *args, sw_batch_size: int = 2, **kwargs):
        super().__init__(*args, **kwargs)
        self.sw_batch_size = sw_batch_size

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        from monai.inferers import sliding_window_inference

        with torch.inference_mode():
            logits = sliding_window_inference(torch.from_numpy(x)[None].to(self.device), tuple(self.spec.seg3d.patch),
                                              self.sw_batch_size, self.seg, overlap=0.5, mode="gaussian",
                                              sigma_scale=0.125, padding_mode="constant", cval=-1.0)
            return torch.sigmoid(logits)[0, 0].cpu().numpy()


def nnunet_steps(length: int, patch: int, step: float = 0.5) -> list[int]:
    """nnU-Net's window starts along one axis (``compute_steps_for_sliding_window``)."""
    target = patch * step
    count = int(math.ceil((length - patch) / target)) + 1
    if count == 1:
        return [0]
    actual = (length - patch) / (count - 1)
    return [int(np.round(actual * i)) for i in range(count)]


def nnunet_gaussian(patch: tuple[int, ...], sigma_scale: float = 0.125, value_scaling: float = 10.0) -> np.ndarray:
    grids = [np.exp(-0.5 * ((np.arange(p) - (p - 1) / 2.0) / (p * sigma_scale)) ** 2) for p in patch]
    g = grids[0][:, None, None] * grids[1][None, :, None] * grids[2][None, None, :]
    g = g / g.max() * value_scaling
    g[g == 0] = g[g != 0].min()
    return g.astype(np.float32)


class NnunetStylePeer(Peer):
    """One slice and one window at a time, nnU-Net's steps and Gaussian."""

    name = "nnunet-style"

    def __init__(self, *args, **kwargs):
        kwargs["batch_2d"] = 1
        super().__init__(*args, **kwargs)

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        patch = tuple(self.spec.seg3d.patch)
        shape = x.shape[1:]
        pads = [(max(p - n, 0) // 2, max(p - n, 0) - max(p - n, 0) // 2) for n, p in zip(shape, patch)]
        padded = np.pad(x, [(0, 0), *pads], constant_values=-1.0)
        gauss = torch.from_numpy(nnunet_gaussian(patch)).to(self.device)
        acc = torch.zeros(padded.shape[1:], device=self.device)
        weight = torch.zeros(padded.shape[1:], device=self.device)
        volume = torch.from_numpy(padded).to(self.device)
        steps = [nnunet_steps(n, p) for n, p in zip(padded.shape[1:], patch)]
        with torch.inference_mode():
            for z in steps[0]:
                for y in steps[1]:
                    for xx in steps[2]:
                        box = (slice(z, z + patch[0]), slice(y, y + patch[1]), slice(xx, xx + patch[2]))
                        logits = self.seg(volume[(slice(None), *box)][None])[0, 0]
                        acc[box] += logits * gauss
                        weight[box] += gauss
        p = torch.sigmoid(acc / weight).cpu().numpy()
        inner = tuple(slice(a, a + n) for (a, _), n in zip(pads, shape))
        return p[inner]


PEERS = {"monai": MonaiPeer, "nnunet-style": NnunetStylePeer}
