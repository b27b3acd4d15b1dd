"""2D augmentation on torch batches: random horizontal flip and small rotation."""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F


def flip_rotate(x: torch.Tensor, y: torch.Tensor, max_degrees: float, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Flip each sample left-right with probability 1/2 and rotate it by U(-max, max) degrees.

    Images are resampled bilinearly (outside: the minimum of the sample, i.e. air); labels
    bilinearly and re-thresholded at 0.5.
    """
    n = x.shape[0]
    flip = torch.rand(n, generator=gen) < 0.5
    angle = (torch.rand(n, generator=gen) * 2 - 1) * math.radians(max_degrees)
    cos, sin = torch.cos(angle), torch.sin(angle)
    sx = torch.where(flip, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = cos * sx, -sin
    theta[:, 1, 0], theta[:, 1, 1] = sin * sx, cos
    theta = theta.to(x.device, x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    floor = x.amin(dim=(1, 2, 3), keepdim=True)
    x_out = F.grid_sample(x - floor, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + floor
    y_out = F.grid_sample(y, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return x_out, (y_out >= 0.5).to(y.dtype)
