"""Fitting the two networks: the 2D localisation net, then the 3D net with cue-weighted loss."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from l2s_engine.spec import Spec

from .augment import flip_rotate
from .data.patches import PatchSampler
from .data.slices import SliceSampler
from .data.studies import TrainStudy
from .losses import loc_loss, lesion_pos_weight, seg_loss
from .loop import LoopConfig, train
from .models import Loc2DNet, Seg3DNet
from .predict import predict_cue

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Fit:
    """What one network's training returns: its loss per epoch, and the BCE lesion weight it
    used with the lesion share that weight came from (both go to the weights' provenance)."""

    losses: list[float]
    lesion_share: float
    bce_lesion_weight: float

    def record(self) -> dict:
        return dict(final_loss=self.losses[-1] if self.losses else None,
                    lesion_share=float(f"{self.lesion_share:.4g}"), bce_lesion_weight=round(self.bce_lesion_weight, 2))


def train_loc2d(model: Loc2DNet, studies: list[TrainStudy], spec: Spec, cfg: LoopConfig, resume: bool) -> Fit:
    """Train the 2D net on coronal slices (L1 = BCE + lambda Dice, ~1/5 lesion slices per batch;
    the BCE weights lesion pixels by ``lesion_pos_weight`` of their share in a batch)."""
    t = spec.train
    sampler = SliceSampler(studies, spec.loc2d, t.batch_2d, t.lesion_fraction_2d)
    share = sampler.lesion_pixel_share()
    pos_weight = lesion_pos_weight(share)
    log.info("2D: %d lesion slices, %d other slices; lesion pixels %.2g of a batch: BCE lesion weight %.1f",
             len(sampler.lesion_items), len(sampler.other_items), share, pos_weight)

    def step(rng: np.random.Generator, gen: torch.Generator) -> torch.Tensor:
        x, y = sampler.batch_arrays(sampler.draw(rng))
        x, y = flip_rotate(torch.from_numpy(x), torch.from_numpy(y), t.rotation_deg, gen)
        return loc_loss(model(x.to(cfg.device)), y.to(cfg.device), t.dice_weight, pos_weight)

    return Fit(train(model, step, cfg, resume), share, pos_weight)


def compute_cues(model: Loc2DNet, studies: list[TrainStudy], spec: Spec, device: str) -> None:
    """Run the trained 2D net once over every study and keep its cue (the 3D loss weight)."""
    for s in studies:
        s.cue = predict_cue(model, s.pet_2d, s.geometry, spec.loc2d, device)


def train_seg3d(model: Seg3DNet, studies: list[TrainStudy], spec: Spec, cfg: LoopConfig, resume: bool) -> Fit:
    """Train the 3D net on PET+CT patches (L2: BCE + Dice weighted by 1 + cue)."""
    t = spec.train
    sampler = PatchSampler(studies, spec.seg3d.patch, t.foreground_fraction_3d)
    share = sampler.lesion_voxel_share(t.batch_3d)
    pos_weight = lesion_pos_weight(share)
    log.info("3D: lesion voxels %.2g of a batch: BCE lesion weight %.1f", share, pos_weight)
    # channels-last (NDHWC) convolutions: 1.27x faster lite bf16 steps on this CPU; same network
    model.to(memory_format=torch.channels_last_3d)

    def step(rng: np.random.Generator, gen: torch.Generator) -> torch.Tensor:
        x, y, cue = (torch.from_numpy(a).to(cfg.device) for a in sampler.draw(rng, t.batch_3d))
        return seg_loss(model(x.contiguous(memory_format=torch.channels_last_3d)), y, cue, t.dice_weight, pos_weight)

    return Fit(train(model, step, cfg, resume), share, pos_weight)
