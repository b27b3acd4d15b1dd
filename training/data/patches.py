"""3D training patches over PET + CT, with lesion oversampling and mirroring."""

from __future__ import annotations

import logging

import numpy as np

from l2s_engine.tiling import pad_amounts

from .studies import TrainStudy

log = logging.getLogger(__name__)
PAD_VALUE = -1.0  # windowed air (PET 0 SUV, CT below the window) maps to -1


class PatchSampler:
    """Random patches, the last ``batch - round(batch * (1 - fg_fraction))`` of each batch centred
    (with jitter) on a lesion voxel (nnU-Net's oversampling rule: a batch of 2 at 0.33 always
    holds one lesion patch).

    The lesion is drawn first, every lesion of the training set (18-connected component) as
    likely as any other, then a voxel of it. nnU-Net draws a voxel of the whole label, so a
    lesion's share of patches grows with its volume: on the wide phantoms (4-40 mm lesions)
    the largest lesion is a thousand times likelier than the smallest, and the lite 3D net
    missed small and near-organ lesions outright (p3d <= 0.01 on them).

    Volumes smaller than the patch along an axis are padded (centred) with air; the
    inference runtime pads the same way.
    """

    def __init__(self, studies: list[TrainStudy], patch: tuple[int, int, int], fg_fraction: float):
        if any(s.cue is None for s in studies):
            raise ValueError("compute the 2D cue of every study before sampling 3D patches")
        self.studies, self.patch, self.fg_fraction = studies, tuple(patch), fg_fraction
        self.lesions = [(i, k) for i, s in enumerate(studies) for k in range(len(s.lesions))]  # (study, lesion)
        self.volumes = [self._padded(s) for s in studies]  # (pet, ct, seg, cue), padded once

    def _padded(self, study: TrainStudy) -> tuple[np.ndarray, ...]:
        pads = pad_amounts(study.seg.shape, self.patch)
        volumes = (study.pet_3d, study.ct_3d, study.seg, study.cue)
        if not any(sum(p) for p in pads):
            return volumes
        log.warning("%s: volume %s is smaller than the patch %s; padding it with air",
                    study.case_id, study.seg.shape, self.patch)
        fills = (PAD_VALUE, PAD_VALUE, 0, 0.0)
        return tuple(np.pad(v, pads, constant_values=f) for v, f in zip(volumes, fills))

    def lesion_voxel_share(self, batch: int, batches: int = 64, seed: int = 0) -> float:
        """The share of lesion voxels in a batch, estimated from ``batches`` batches drawn with
        their own generator (the training draws are untouched)."""
        rng = np.random.default_rng(seed)
        return float(np.mean([self.draw(rng, batch)[1].mean() for _ in range(batches)]))

    def draw(self, rng: np.random.Generator, batch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(inputs (B, 2, D, H, W), targets (B, 1, ...), cue (B, 1, ...)) float32."""
        xs, ys, cs = [], [], []
        n_random = round(batch * (1.0 - self.fg_fraction))  # nnU-Net's rule: the rest are lesion-centred
        for k in range(batch):
            lesion = k >= n_random and bool(self.lesions)
            index, which = self.lesions[rng.integers(len(self.lesions))] if lesion else (rng.integers(len(self.studies)), 0)
            study, volumes = self.studies[index], self.volumes[index]
            pads = pad_amounts(study.seg.shape, self.patch)
            high = np.array(volumes[0].shape) - np.array(self.patch)
            if lesion:
                voxels = study.lesions[which]
                voxel = voxels[rng.integers(len(voxels))] + np.array([p[0] for p in pads])
                jitter = rng.integers(-np.array(self.patch) // 4, np.array(self.patch) // 4 + 1)
                start = np.clip(voxel - np.array(self.patch) // 2 + jitter, 0, high)
            else:
                start = np.array([rng.integers(h + 1) for h in high])
            box = tuple(slice(int(a), int(a) + p) for a, p in zip(start, self.patch))
            pet, ct, seg, cue = (v[box] for v in volumes)
            flips = tuple(ax for ax in range(3) if rng.random() < 0.5)
            if flips:
                pet, ct, seg, cue = (np.flip(a, flips) for a in (pet, ct, seg, cue))
            xs.append(np.stack([pet, ct]))
            ys.append(seg[None].astype(np.float32))
            cs.append(cue[None].astype(np.float32))
        return np.stack(xs), np.stack(ys), np.stack(cs)
