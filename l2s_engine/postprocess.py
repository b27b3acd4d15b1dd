"""The fusion rules of the two stages (numpy reference).

``paper``: the seed paper's adaptive threshold. ``components``: the connected-component
rules of the authors' public code (REFERENCE.md), which also mark single voxels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .spec import FusionSpec

PAPER = "paper"  # the seed paper's adaptive threshold: the default, and the one the GPU kernel fuses
RULES = (PAPER, "components")


SLAB = 16  # planes per step along axis 0: boolean temporaries stay a slab, not a volume


def fuse_paper(p3d: np.ndarray, cue: np.ndarray, fusion: FusionSpec) -> np.ndarray:
    """L2SNet's adaptive threshold: ``p3d > (cue > t_cue ? t_low : t_high)``, as uint8.

    Written with boolean masks rather than ``np.where`` on thresholds (the same rule, about
    five times faster on whole-body volumes), slab by slab so that no whole-volume temporary
    is made beyond the output.
    """
    out = np.empty(p3d.shape, np.uint8)
    for z in range(0, p3d.shape[0], SLAB):
        p, c = p3d[z:z + SLAB], cue[z:z + SLAB]
        located = c > fusion.cue_threshold
        mask = (located & (p > fusion.low_threshold)) | (~located & (p > fusion.high_threshold))
        out[z:z + SLAB] = mask
    return out


@dataclass(frozen=True)
class ComponentRule:
    """The constants of the public code's rules (voxel counts at its native resolution)."""

    certain: float = 0.9          # ``high = p3d > certain``
    min_high: int = 50            # empty output unless the largest high component ...
    min_low: int = 150            # ... or the largest low component reaches this size
    min_high_in_low: int = 20     # fewer high voxels in a low component: keep its peak only
    max_low_per_high: float = 2.25  # |C| / |C n high| above this: keep C n high only


def fuse_components(p3d: np.ndarray, cue: np.ndarray, fusion: FusionSpec,
                    rule: ComponentRule = ComponentRule()) -> np.ndarray:
    """The authors' public connected-component fusion (18-connectivity), as uint8.

    ``low = p3d > t_high`` (0.5), ``high = p3d > rule.certain`` (0.9), ``cue = cue > t_cue``.
    Empty if the largest high component is under ``min_high`` voxels and the largest low
    component under ``min_low``. Each low component C: with fewer than ``min_high_in_low``
    high voxels, or not touching the cue, only its most probable voxel is kept; else if
    |C| / |C n high| > ``max_low_per_high`` only C n high; else C. Then every cue component
    not overlapping the result whose peak p3d exceeds ``t_low`` (0.1) adds its peak voxel.
    """
    import cc3d

    low = p3d > fusion.high_threshold
    high = p3d > rule.certain
    located = cue > fusion.cue_threshold
    out = np.zeros(p3d.shape, np.uint8)
    low_labels = cc3d.connected_components(low, connectivity=18)
    n_low = int(low_labels.max())
    low_sizes = np.bincount(low_labels.ravel(), minlength=n_low + 1)
    high_labels = cc3d.connected_components(high, connectivity=18)
    largest_high = int(np.bincount(high_labels.ravel())[1:].max(initial=0))
    if largest_high < rule.min_high and int(low_sizes[1:].max(initial=0)) < rule.min_low:
        return out
    flat_out, flat_p = out.reshape(-1), p3d.reshape(-1)
    if n_low:
        flat_labels = low_labels.reshape(-1)
        high_in = np.bincount(flat_labels, weights=high.reshape(-1), minlength=n_low + 1)
        touches = np.bincount(flat_labels, weights=located.reshape(-1), minlength=n_low + 1) > 0
        peak_only = (high_in < rule.min_high_in_low) | ~touches
        with np.errstate(divide="ignore"):
            high_only = ~peak_only & (low_sizes / high_in > rule.max_low_per_high)
        whole = ~peak_only & ~high_only
        whole[0] = high_only[0] = False
        out[whole[low_labels] | (high_only[low_labels] & high)] = 1
        peaks = _peak_voxels(flat_labels, flat_p, n_low)
        flat_out[peaks[1:][peak_only[1:]]] = 1
    cue_labels = cc3d.connected_components(located, connectivity=18).reshape(-1)
    n_cue = int(cue_labels.max())
    if n_cue:
        overlapping = np.bincount(cue_labels, weights=flat_out, minlength=n_cue + 1) > 0
        peaks = _peak_voxels(cue_labels, flat_p, n_cue)
        for k in range(1, n_cue + 1):
            if not overlapping[k] and flat_p[peaks[k]] > fusion.low_threshold:
                flat_out[peaks[k]] = 1
    return out


def _peak_voxels(labels: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Flat index of the largest value within each label 1..n (index 0 unused)."""
    idx = np.flatnonzero(labels)
    order = idx[np.lexsort((values[idx], labels[idx]))]  # by label, then value ascending
    last = np.flatnonzero(np.diff(labels[order], append=n + 1))  # last entry of each label
    peaks = np.zeros(n + 1, np.int64)
    peaks[labels[order[last]]] = order[last]
    return peaks


def fuse(rule: str, p3d: np.ndarray, cue: np.ndarray, fusion: FusionSpec) -> np.ndarray:
    """Apply the fusion rule named ``rule`` (one of RULES)."""
    if rule == PAPER:
        return fuse_paper(p3d, cue, fusion)
    if rule == "components":
        return fuse_components(p3d, cue, fusion)
    raise ValueError(f"unknown fusion rule {rule!r}; choose one of {', '.join(RULES)}")
