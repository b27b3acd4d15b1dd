"""autoPET lesion metrics: Dice, false-positive and false-negative volume (mL).

Definitions as in the autoPET challenges (lab-midas/autoPET ``val_script.py``, autoPET III
``evaluation_metrics.py``): components are 18-connected (cc3d); FPV is the volume of
predicted components that touch no ground-truth voxel; FNV the volume of ground-truth
components that touch no predicted voxel; Dice = 2|A n B| / (|A| + |B|).

Lesion-free cases are scored in two named conventions:

- ``positive-only`` (autoPET III, papers): Dice and FNV are NaN for a case without lesions
  and averaged over the cases with lesions; FPV is averaged over all cases.
- ``all-cases`` (autoPET II leaderboard): a case without lesions scores Dice 0 and FNV 0,
  and every metric is averaged over all cases.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

CONNECTIVITY = 18
CONVENTIONS = ("positive-only", "all-cases")


@dataclass(frozen=True)
class CaseMetrics:
    """Metrics of one case. ``dice`` and ``fnv_ml`` are NaN when the truth is empty."""

    case_id: str
    gt_voxels: int
    pred_voxels: int
    dice: float
    fpv_ml: float
    fnv_ml: float

    @property
    def positive(self) -> bool:
        """Whether the ground truth holds any lesion."""
        return self.gt_voxels > 0

    def in_convention(self, convention: str) -> tuple[float, float, float]:
        """(Dice, FPV, FNV) of this case as scored by ``convention``."""
        if convention == "positive-only":
            return self.dice, self.fpv_ml, self.fnv_ml
        if convention == "all-cases":
            return (self.dice if self.positive else 0.0), self.fpv_ml, (self.fnv_ml if self.positive else 0.0)
        raise ValueError(f"unknown convention {convention!r}; use one of {CONVENTIONS}")


def unmatched_component_voxels(mask: np.ndarray, other: np.ndarray) -> int:
    """Voxels of the 18-connected components of ``mask`` that share no voxel with ``other``."""
    import cc3d  # here, so that mask_dice works where cc3d is not installed (GPU check hosts)

    labels, count = cc3d.connected_components(mask, connectivity=CONNECTIVITY, return_N=True)
    if count == 0:
        return 0
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    matched = np.zeros(count + 1, dtype=bool)
    matched[labels[other]] = True
    matched[0] = True  # background is not a component
    return int(sizes[~matched].sum())


def case_metrics(pred: np.ndarray, gt: np.ndarray, voxel_volume_ml: float, case_id: str = "") -> CaseMetrics:
    """Dice, FPV and FNV of one case.

    Args:
        pred: predicted mask (any dtype; non-zero is lesion), (z, y, x).
        gt: ground-truth mask on the same grid.
        voxel_volume_ml: volume of one voxel in mL (product of the spacings in mm / 1000).
        case_id: carried into the result.

    Raises:
        ValueError: the masks differ in shape.
    """
    if pred.shape != gt.shape:
        raise ValueError(f"case {case_id!r}: prediction shape {pred.shape} differs from truth shape {gt.shape}")
    pred_b, gt_b = pred != 0, gt != 0
    n_pred, n_gt = int(np.count_nonzero(pred_b)), int(np.count_nonzero(gt_b))
    fpv = unmatched_component_voxels(pred_b, gt_b) * voxel_volume_ml
    if n_gt == 0:
        return CaseMetrics(case_id, 0, n_pred, math.nan, fpv, math.nan)
    fnv = unmatched_component_voxels(gt_b, pred_b) * voxel_volume_ml
    return CaseMetrics(case_id, n_gt, n_pred, mask_dice(pred_b, gt_b), fpv, fnv)


def mask_dice(a: np.ndarray, b: np.ndarray, empty: float | None = 1.0) -> float | None:
    """Dice 2|A n B| / (|A| + |B|) of two masks (non-zero is lesion); ``empty`` when both are empty.

    The one Dice of the project: metrics, the bf16 gate, benchmarks and tests compare masks with it.
    """
    a, b = np.asarray(a) != 0, np.asarray(b) != 0
    total = int(np.count_nonzero(a)) + int(np.count_nonzero(b))
    return empty if total == 0 else 2.0 * int(np.count_nonzero(a & b)) / total


def aggregate(cases: Sequence[CaseMetrics], convention: str) -> dict[str, float]:
    """Mean Dice, FPV and FNV over ``cases`` in one convention, with the case counts.

    Means over no case are NaN (e.g. positive-only Dice over lesion-free cases only).
    """
    rows = np.array([c.in_convention(convention) for c in cases], dtype=np.float64).reshape(-1, 3)

    def mean(column: np.ndarray) -> float:
        finite = column[~np.isnan(column)]
        return float(finite.mean()) if finite.size else math.nan

    return {
        "convention": convention,
        "cases": len(cases),
        "positive_cases": sum(c.positive for c in cases),
        "dice": mean(rows[:, 0]),
        "fpv_ml": mean(rows[:, 1]),
        "fnv_ml": mean(rows[:, 2]),
    }
