"""Coronal-slice batches for the 2D net, with a fixed share of lesion slices."""

from __future__ import annotations

import numpy as np

from l2s_engine.preprocess import coronal_axes, resize_bilinear, slices_to_input, to_coronal
from l2s_engine.spec import Loc2DSpec

from .studies import TrainStudy


def slice_target(seg_coronal: np.ndarray, index: np.ndarray, spec: Loc2DSpec) -> np.ndarray:
    """Labels of coronal slices ``index`` in network-input space: (N, 1, H, W) float32 0/1."""
    r0, r1, c0, c1 = spec.crop
    resized = resize_bilinear(seg_coronal[index].astype(np.float32), spec.resize)[:, r0:r1, c0:c1]
    return (resized >= 0.5).astype(np.float32)[:, None]


class SliceSampler:
    """Draws batches of coronal slices, about ``lesion_fraction`` of them holding a lesion.

    Each batch holds floor(B * f) lesion slices, plus one more with probability
    B * f - floor(B * f), so the long-run share is exactly f. A lesion slice is one whose
    label, in network-input space (after resize and crop), holds a lesion voxel.

    A lesion slice is drawn per lesion (as ``PatchSampler`` draws 3D patches): a lesion
    (18-connected component) first, every one as likely as any other, then one of the lesion
    slices it crosses. Drawn per slice, a 40 mm lesion would be ten times likelier than a
    4 mm one.
    """

    def __init__(self, studies: list[TrainStudy], spec: Loc2DSpec, batch: int, lesion_fraction: float):
        self.studies, self.spec, self.batch, self.fraction = studies, spec, batch, lesion_fraction
        self.coronal = [to_coronal(s.pet_2d, s.geometry) for s in studies]
        self.seg_coronal = [to_coronal(s.seg, s.geometry) for s in studies]
        lesion, other, pixels = [], [], []
        for i, seg in enumerate(self.seg_coronal):
            index = np.arange(seg.shape[0])
            counts = np.zeros(seg.shape[0], np.int64)
            candidates = np.nonzero(seg.reshape(seg.shape[0], -1).any(axis=1))[0]
            if candidates.size:
                counts[candidates] = slice_target(seg, candidates, spec).reshape(candidates.size, -1).sum(axis=1)
            flags = counts > 0
            lesion += [(i, j) for j in index[flags]]
            other += [(i, j) for j in index[~flags]]
            pixels += list(counts[flags])
        if not lesion:
            raise ValueError("no coronal slice holds a lesion after resize and crop")
        self.lesion_items, self.other_items = lesion, other
        self.lesion_pixels = np.array(pixels, np.int64)  # label pixels of each lesion item
        self.by_lesion = self._items_by_lesion(studies)

    def _items_by_lesion(self, studies: list[TrainStudy]) -> list[np.ndarray]:
        """For each lesion seen in some lesion slice, the indices of those slices in ``lesion_items``."""
        where = {item: k for k, item in enumerate(self.lesion_items)}
        out = []
        for i, s in enumerate(studies):
            axis = coronal_axes(s.geometry)[0]
            for voxels in s.lesions:
                items = [where[(i, j)] for j in np.unique(voxels[:, axis]) if (i, j) in where]
                if items:
                    out.append(np.array(items, np.int64))
        return out

    def lesion_item_odds(self) -> np.ndarray:
        """The probability that a drawn lesion slice is each of ``lesion_items``."""
        odds = np.zeros(len(self.lesion_items))
        for items in self.by_lesion:
            odds[items] += 1.0 / (len(self.by_lesion) * len(items))
        return odds

    def lesion_pixel_share(self) -> float:
        """The expected share of lesion pixels in a batch (before augmentation)."""
        rows, cols = self.spec.slice_shape
        return float(self.fraction * (self.lesion_item_odds() @ self.lesion_pixels) / (rows * cols))

    def draw(self, rng: np.random.Generator) -> list[tuple[int, int, bool]]:
        """(study, slice, is_lesion) for one batch."""
        expected = self.batch * self.fraction
        n_lesion = int(expected) + int(rng.random() < expected - int(expected))
        lesions = [self.by_lesion[k] for k in rng.integers(len(self.by_lesion), size=n_lesion)]
        picks = [(*self.lesion_items[items[rng.integers(len(items))]], True) for items in lesions]
        picks += [(*self.other_items[k], False) for k in rng.integers(len(self.other_items), size=self.batch - n_lesion)]
        return [picks[k] for k in rng.permutation(len(picks))]

    def batch_arrays(self, picks: list[tuple[int, int, bool]]) -> tuple[np.ndarray, np.ndarray]:
        """(inputs (B, in_slices, H, W), targets (B, 1, H, W)) for drawn slices."""
        xs, ys = [], []
        for study, j, _ in picks:
            index = np.array([j])
            xs.append(slices_to_input(self.coronal[study], index, self.spec.resize, self.spec.crop, self.spec.in_slices))
            ys.append(slice_target(self.seg_coronal[study], index, self.spec))
        return np.concatenate(xs), np.concatenate(ys)
