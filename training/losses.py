"""The L2SNet losses (paper section 2).

Both are BCE + lambda * soft Dice on logits. The Dice is computed once over the whole batch
(all voxels of all samples pooled), with smoothing 1.0 in numerator and denominator, so an
all-background batch predicted empty scores a Dice loss near 0 instead of 0/0.

In both, the BCE counts each lesion voxel ``pos_weight`` times (see ``lesion_pos_weight``).
L1 (2D localisation) has unit voxel weights otherwise. L2 (3D segmentation) weights every
voxel by ``1 + P_loc``, the location cue in [0, 1] from the 2D net: both the BCE (a weighted
mean) and the Dice sums (w * p * g, w * p, w * g) use that weight, so a voxel with cue 1
counts twice as much as one with cue 0.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

DICE_SMOOTH = 1.0


def bce_dice_loss(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None,
                  dice_weight: float = 1.0, pos_weight: float = 1.0) -> torch.Tensor:
    """Weighted BCE + dice_weight * weighted soft Dice (weights default to 1).

    Args:
        logits: raw network outputs, any shape.
        target: 0/1 of the same shape.
        weight: per-voxel weights of the same shape (L2: 1 + cue), or None.
        dice_weight: lambda.
        pos_weight: factor on the BCE's lesion term, -pos_weight * g * log(p) (the Dice is unchanged).
    """
    logits, target = logits.float(), target.float()
    w = torch.ones_like(logits) if weight is None else weight.float()
    pw = None if pos_weight == 1.0 else logits.new_tensor(pos_weight)
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none", pos_weight=pw)
    bce = (w * bce).sum() / w.sum()
    p = torch.sigmoid(logits)
    inter = (w * p * target).sum()
    dice = (2.0 * inter + DICE_SMOOTH) / ((w * p).sum() + (w * target).sum() + DICE_SMOOTH)
    return bce + dice_weight * (1.0 - dice)


def lesion_pos_weight(lesion_share: float) -> float:
    """The BCE's lesion-voxel weight for batches whose voxels are ``lesion_share`` lesion:
    sqrt(background / lesion voxels), at least 1. L1 and L2 both use it.

    Why: on whole coronal slices lesions are a tiny share of the pixels (lite preset on the
    small phantoms: about 1.1e-4 of a batch, a median 6 pixels per lesion slice). With unit
    weights, at the 1% prior head, the background's summed BCE gradient (N_bg * p) outweighs
    the lesions' (N_les * (1 - p)) about 170 times, and the pooled batch Dice's gradient on a
    lesion pixel, ~2 p (1 - p) / sum(p), is ~1e-5: the net only learns to lower every logit
    (cue < 0.01 everywhere, L1 stuck near 1). With w = sqrt(N_bg / N_les) the two BCE sums
    are within a factor of ~2 at the prior (sqrt(share) / p ~ 1); the Dice then takes over
    once lesions are found. On those phantoms (240 batches) w = 30 found fewer lesions and
    w = 300 doubled the false positives on lesion-free studies relative to w = 100.
    The 3D net falls into the same trap on the wide phantoms (lesions 2.7e-4 of a batch of
    two 64^3 patches, one lesion-centred): unweighted, its loss fell to 0.68 by batch 560,
    then rose to 0.95 as the head's bias sank to -8.4 and every probability below 1e-3.
    """
    if not 0.0 < lesion_share < 1.0:
        return 1.0
    return max(1.0, math.sqrt((1.0 - lesion_share) / lesion_share))


def loc_loss(logits: torch.Tensor, target: torch.Tensor, dice_weight: float = 1.0,
             pos_weight: float = 1.0) -> torch.Tensor:
    """L1 = BCE (lesion pixels weighted by ``pos_weight``) + lambda * Dice for the 2D localisation net."""
    return bce_dice_loss(logits, target, None, dice_weight, pos_weight)


def seg_loss(logits: torch.Tensor, target: torch.Tensor, cue: torch.Tensor, dice_weight: float = 1.0,
             pos_weight: float = 1.0) -> torch.Tensor:
    """L2 = BCE + Dice, both weighted per voxel by 1 + cue (the BCE's lesion term also by
    ``pos_weight``), for the 3D segmentation net."""
    return bce_dice_loss(logits, target, 1.0 + cue, dice_weight, pos_weight)
