"""Training studies in memory: normalised PET/CT, labels, and lesion bookkeeping."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import cc3d
import numpy as np

from l2s_engine.errors import L2SError
from l2s_engine.geometry import Geometry
from l2s_engine.io import find_studies, iter_studies
from l2s_engine.metrics import CONNECTIVITY
from l2s_engine.preprocess import intensity_window
from l2s_engine.resample import CT_ORDER, PET_ORDER, GridMap, grid_map
from l2s_engine.spec import Spec

log = logging.getLogger(__name__)


class TrainingDataError(L2SError):
    """The training data cannot train the model (no studies, no labels, no lesions)."""


@dataclass
class TrainStudy:
    """One study, preprocessed once for both stages, on the network grid (the spec's spacing).
    Arrays are (z, y, x)."""

    case_id: str
    geometry: Geometry          # the network grid
    pet_2d: np.ndarray          # PET windowed with the 2D spec, float32
    pet_3d: np.ndarray          # PET windowed with the 3D spec
    ct_3d: np.ndarray           # CT windowed with the 3D spec
    seg: np.ndarray             # uint8 0/1
    cue: np.ndarray | None = None  # 2D-net probabilities, set before 3D training
    lesions: list[np.ndarray] = field(default_factory=list)  # voxel indices (n, 3) of each lesion
    grid: GridMap | None = None    # the study's native grid and the network grid
    native_seg: np.ndarray | None = None  # the label on the native grid (evaluation)

    @property
    def positive(self) -> bool:
        return bool(self.lesions)


def lesion_components(seg: np.ndarray) -> list[np.ndarray]:
    """The voxel indices (n, 3) of each lesion of ``seg``: its 18-connected components, as
    the challenge metrics count lesions."""
    labels, count = cc3d.connected_components(seg > 0, connectivity=CONNECTIVITY, return_N=True)
    if not count:
        return []
    order = np.argsort(labels, axis=None, kind="stable")
    bounds = np.searchsorted(labels.ravel()[order], np.arange(1, count + 2))
    return [np.stack(np.unravel_index(order[a:b], seg.shape), axis=1) for a, b in zip(bounds[:-1], bounds[1:])]


def labelled_refs(data: list[Path], case_ids: set[str] | None = None) -> list:
    """The labelled studies below ``data`` (optionally only ``case_ids``).

    Raises:
        TrainingDataError: there is none.
    """
    refs = [r for r in find_studies(data) if r.seg is not None and (case_ids is None or r.case_id in case_ids)]
    if not refs:
        raise TrainingDataError(f"no study with a label (SEG.* / labelsTr) below {', '.join(map(str, data))}")
    return refs


def median_spacing(refs) -> tuple[float, float, float]:
    """The median PET spacing of ``refs``, (z, y, x) mm rounded to 0.1 um, read from the raw
    headers only (nnU-Net's choice of the network spacing).

    The headers are read as the runtime reads them (``check_header``): a study whose header
    declares an impossible spacing is left out here, as loading will refuse it, instead of
    being counted at the 1.0 mm ITK would substitute.
    """
    from l2s_engine.errors import StudyError
    from l2s_engine.io.images import check_header

    spacings = []
    for ref in refs:
        try:
            head = check_header(ref.pet, "PET")
        except StudyError as exc:
            log.warning("%s: not counted in the median spacing: %s", ref.case_id, exc)
            continue
        if head is not None:
            spacings.append(tuple(reversed(head.spacing[:3])))
    if not spacings:
        raise TrainingDataError(f"no PET header with a usable spacing among {len(refs)} studies")
    return tuple(round(float(v), 4) for v in np.median(np.array(spacings), axis=0))


def load_training_studies(data: list[Path], spec: Spec, case_ids: set[str] | None = None,
                          keep_native: bool = False) -> list[TrainStudy]:
    """Load every labelled study below ``data`` (optionally only ``case_ids``), resampled to
    the spec's network spacing as the runtime does (PET Keys cubic, CT linear; the label
    linear, then > 0.5).

    Args:
        keep_native: also keep each label on its native grid (``TrainStudy.native_seg``).

    Raises:
        TrainingDataError: no labelled study, or none with a lesion.
    """
    refs = labelled_refs(data, case_ids)
    out = []
    for result in iter_studies(refs):
        if result.study is None:
            continue
        s = result.study
        grid = grid_map(s.geometry, spec.spacing_zyx_mm)
        pet, ct, seg = grid.to_network(s.pet, PET_ORDER), grid.to_network(s.ct, CT_ORDER), s.seg
        if grid.resampled:
            seg = (grid.to_network(s.seg, "linear") > 0.5).astype(np.uint8)
        out.append(TrainStudy(
            s.case_id, grid.network, intensity_window(pet, *spec.loc2d.suv_window), intensity_window(pet, *spec.seg3d.suv_window),
            intensity_window(ct, *spec.seg3d.ct_window), seg, lesions=lesion_components(seg), grid=grid,
            native_seg=s.seg if keep_native else None))
    if not any(t.positive for t in out):
        raise TrainingDataError(f"none of the {len(out)} labelled studies has a lesion: the networks cannot "
                                "learn what a lesion is; add positive studies")
    log.info("loaded %d labelled studies (%d with lesions; %d resampled to the network spacing %s mm, z, y, x)",
             len(out), sum(t.positive for t in out), sum(t.grid.resampled for t in out), spec.spacing_zyx_mm)
    return out
