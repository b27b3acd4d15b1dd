"""Whole-volume prediction with the torch networks (training-side: cue cache, evaluation).

The product's runtime (l2s_engine) runs exported engines; this is the plain torch version
of the same plan, sharing its preprocessing and shape math.
"""

from __future__ import annotations

import numpy as np
import torch

from l2s_engine.geometry import Geometry
from l2s_engine.preprocess import from_coronal, slices_from_output, slices_to_input, to_coronal
from l2s_engine.spec import Loc2DSpec, Seg3DSpec
from l2s_engine.tiling import gaussian_weights, pad_amounts, window_grid


@torch.no_grad()
def predict_cue(model: torch.nn.Module, pet_2d: np.ndarray, geometry: Geometry, spec: Loc2DSpec,
                device: str = "cpu", batch: int = 16) -> np.ndarray:
    """The location cue (2D-net probabilities) of one study on its grid, float32 (z, y, x)."""
    model.eval()
    coronal = to_coronal(pet_2d, geometry)
    out = np.zeros(coronal.shape, np.float32)
    for start in range(0, coronal.shape[0], batch):
        index = np.arange(start, min(start + batch, coronal.shape[0]))
        x = torch.from_numpy(slices_to_input(coronal, index, spec.resize, spec.crop, spec.in_slices)).to(device)
        probs = torch.sigmoid(model(x)).float().cpu().numpy()[:, 0]
        out[index] = slices_from_output(probs, spec.resize, spec.crop, coronal.shape[1:])
    return np.ascontiguousarray(from_coronal(out, geometry))


@torch.no_grad()
def predict_volume(model: torch.nn.Module, pet_3d: np.ndarray, ct_3d: np.ndarray, spec: Seg3DSpec,
                   step_fraction: float = 0.5, device: str = "cpu", batch: int = 2) -> np.ndarray:
    """3D-net lesion probabilities of one study (Gaussian-weighted sliding windows), float32."""
    model.eval()
    pads = pad_amounts(pet_3d.shape, spec.patch)
    x = np.stack([np.pad(pet_3d, pads, constant_values=-1.0), np.pad(ct_3d, pads, constant_values=-1.0)])
    weights = gaussian_weights(spec.patch)
    acc = np.zeros(x.shape[1:], np.float32)
    wsum = np.zeros(x.shape[1:], np.float32)
    starts = window_grid(x.shape[1:], spec.patch, step_fraction)
    for k in range(0, len(starts), batch):
        group = starts[k:k + batch]
        boxes = [tuple(slice(a, a + p) for a, p in zip(s, spec.patch)) for s in group]
        inputs = torch.from_numpy(np.stack([x[(slice(None), *b)] for b in boxes])).to(device)
        logits = model(inputs).float().cpu().numpy()[:, 0]
        for b, logit in zip(boxes, logits):
            acc[b] += logit * weights
            wsum[b] += weights
    probs = 1.0 / (1.0 + np.exp(-(acc / wsum)))
    inner = tuple(slice(p[0], p[0] + n) for p, n in zip(pads, pet_3d.shape))
    return probs[inner].astype(np.float32)
