"""Training studies in memory: normalised PET/CT, labels, and lesion bookkeeping."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from l2s_engine.errors import L2SError
from l2s_engine.geometry import Geometry
from l2s_engine.io import find_studies, iter_studies
from l2s_engine.preprocess import window
from l2s_engine.spec import Spec

log = logging.getLogger(__name__)


class TrainingDataError(L2SError):
    """The training data cannot train the model (no studies, no labels, no lesions)."""


@dataclass
class TrainStudy:
    """One study, preprocessed once for both stages. Arrays are (z, y, x)."""

    case_id: str
    geometry: Geometry
    pet_2d: np.ndarray          # PET windowed with the 2D spec, float32
    pet_3d: np.ndarray          # PET windowed with the 3D spec
    ct_3d: np.ndarray           # CT windowed with the 3D spec
    seg: np.ndarray             # uint8 0/1
    cue: np.ndarray | None = None  # 2D-net probabilities, set before 3D training
    lesion_voxels: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.int64))

    @property
    def positive(self) -> bool:
        return self.lesion_voxels.shape[0] > 0


def load_training_studies(data: list[Path], spec: Spec, case_ids: set[str] | None = None) -> list[TrainStudy]:
    """Load every labelled study below ``data`` (optionally only ``case_ids``).

    Raises:
        TrainingDataError: no labelled study, or none with a lesion.
    """
    refs = [r for r in find_studies(data) if r.seg is not None and (case_ids is None or r.case_id in case_ids)]
    if not refs:
        raise TrainingDataError(f"no study with a label (SEG.* / labelsTr) below {', '.join(map(str, data))}")
    out = []
    for result in iter_studies(refs):
        if result.study is None:
            continue
        s = result.study
        out.append(TrainStudy(
            s.case_id, s.geometry, window(s.pet, *spec.loc2d.suv_window), window(s.pet, *spec.seg3d.suv_window),
            window(s.ct, *spec.seg3d.ct_window), s.seg, lesion_voxels=np.argwhere(s.seg > 0)))
    if not any(t.positive for t in out):
        raise TrainingDataError(f"none of the {len(out)} labelled studies has a lesion: the networks cannot "
                                "learn what a lesion is; add positive studies")
    log.info("loaded %d labelled studies (%d with lesions)", len(out), sum(t.positive for t in out))
    return out
