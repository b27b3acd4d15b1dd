"""The L2SNet losses (paper section 2).

Both are BCE + lambda * soft Dice on logits. The Dice is computed once over the whole batch
(all voxels of all samples pooled), with smoothing 1.0 in numerator and denominator, so an
all-background batch predicted empty scores a Dice loss near 0 instead of 0/0.

L1 (2D localisation) has unit voxel weights. L2 (3D segmentation) weights every voxel by
``1 + P_loc``, the location cue in [0, 1] from the 2D net: both the BCE (a weighted mean)
and the Dice sums (w * p * g, w * p, w * g) use that weight, so a voxel with cue 1 counts
twice as much as one with cue 0.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

DICE_SMOOTH = 1.0


def bce_dice_loss(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None,
                  dice_weight: float = 1.0) -> torch.Tensor:
    """Weighted BCE + dice_weight * weighted soft Dice (weights default to 1).

    Args:
        logits: raw network outputs, any shape.
        target: 0/1 of the same shape.
        weight: per-voxel weights of the same shape (L2: 1 + cue), or None.
        dice_weight: lambda.
    """
    logits, target = logits.float(), target.float()
    w = torch.ones_like(logits) if weight is None else weight.float()
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    bce = (w * bce).sum() / w.sum()
    p = torch.sigmoid(logits)
    inter = (w * p * target).sum()
    dice = (2.0 * inter + DICE_SMOOTH) / ((w * p).sum() + (w * target).sum() + DICE_SMOOTH)
    return bce + dice_weight * (1.0 - dice)


def loc_loss(logits: torch.Tensor, target: torch.Tensor, dice_weight: float = 1.0) -> torch.Tensor:
    """L1 = BCE + lambda * Dice for the 2D localisation net."""
    return bce_dice_loss(logits, target, None, dice_weight)


def seg_loss(logits: torch.Tensor, target: torch.Tensor, cue: torch.Tensor, dice_weight: float = 1.0) -> torch.Tensor:
    """L2 = BCE + Dice, both weighted per voxel by 1 + cue, for the 3D segmentation net."""
    return bce_dice_loss(logits, target, 1.0 + cue, dice_weight)
