"""PET readout of a lesion mask: TMTV, TLG, SUVmax/mean/peak and a per-lesion table.

What a PET reader reports per study, from the mask, the SUV volume and their grid. Lesions are
the 18-connected components of the mask, as in the autoPET metrics (:mod:`l2s_engine.metrics`),
so a lesion count here matches the components those metrics score. Pure numpy + cc3d.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cc3d
import numpy as np

from l2s_engine.geometry import Geometry
from l2s_engine.metrics import CONNECTIVITY

# PERCIST: a sphere of 1 cm^3, radius (3 / (4 pi))^(1/3) cm ~ 6.2035 mm.
PEAK_RADIUS_MM = 10.0 * (3.0 / (4.0 * math.pi)) ** (1.0 / 3.0)
LESION_CSV_FIELDS = ("study", "lesion_id", "x_mm", "y_mm", "z_mm", "volume_ml", "suvmax", "suvmean",
                     "suvpeak", "tlg_ml", "voxels", "cue")


@dataclass(frozen=True)
class Lesion:
    """One 18-connected lesion; ``lesion_id`` 1..n by decreasing volume (ties: first voxel in C order)."""

    lesion_id: int
    voxels: int
    volume_ml: float
    centroid_lps_mm: tuple[float, float, float]
    suvmax: float
    suvmean: float
    suvpeak: float
    tlg_ml: float
    cue: bool | None  # any voxel with cue > threshold; None when no cue was given


@dataclass(frozen=True)
class Readout:
    """Study-level readout; the SUV fields are None when the mask is empty."""

    tmtv_ml: float
    tlg_ml: float
    suvmax: float | None
    suvmean: float | None
    suvpeak: float | None
    lesion_count: int
    lesions: tuple[Lesion, ...]

    def summary(self) -> dict:
        """The study numbers as a JSON-ready dict (None, never NaN, where there is no lesion)."""
        return {"tmtv_ml": self.tmtv_ml, "tlg_ml": self.tlg_ml, "suvmax": self.suvmax,
                "suvmean": self.suvmean, "suvpeak": self.suvpeak, "lesion_count": self.lesion_count}


def sphere_offsets(spacing_zyx: np.ndarray, radius_mm: float = PEAK_RADIUS_MM) -> np.ndarray:
    """Integer (z, y, x) offsets of the voxels whose centres lie within ``radius_mm``, (k, 3)."""
    reach = np.floor(radius_mm / spacing_zyx).astype(int)
    grid = np.stack(np.meshgrid(*[np.arange(-r, r + 1) for r in reach], indexing="ij"), -1).reshape(-1, 3)
    return grid[((grid * spacing_zyx) ** 2).sum(axis=1) <= radius_mm**2]


def _peak(suv: np.ndarray, inside: np.ndarray, lo: np.ndarray, offsets: np.ndarray) -> float:
    """Highest sphere mean of ``suv`` centred on a voxel of ``inside`` (the lesion's box at ``lo``).

    Sums shifted crops of the box grown by the sphere's reach, so the work scales with the
    lesion, not the image. Where the grown box leaves the image it is zero-padded and a
    validity crop counts the sphere voxels that exist, so border means are over those only.
    """
    reach, shape, size = offsets.max(axis=0), np.asarray(suv.shape), np.asarray(inside.shape)
    glo, ghi = np.maximum(lo - reach, 0), np.minimum(lo + size + reach, shape)
    crop = np.asarray(suv[tuple(map(slice, glo, ghi))], dtype=np.float64)
    if not np.isfinite(crop).all():
        raise ValueError(f"SUV is not finite within {PEAK_RADIUS_MM:.2f} mm of the lesion at voxel (z, y, x) "
                         f"{tuple(int(v) for v in lo)}: SUVpeak needs finite SUV around every lesion")
    pad = list(zip(reach - (lo - glo), reach - (ghi - lo - size)))
    clipped = any(a or b for a, b in pad)
    padded = np.pad(crop, pad)
    valid = np.pad(np.ones(crop.shape), pad) if clipped else None
    total = np.zeros(size)
    count = np.zeros(size) if clipped else float(len(offsets))  # away from the border: every offset exists
    for off in offsets + reach:
        window = tuple(map(slice, off, off + size))
        total += padded[window]
        if clipped:
            count += valid[window]
    means = total / count
    return float(means[inside].max())


def _validate(mask, suv, geometry: Geometry, cue) -> None:
    if mask.shape != suv.shape:
        raise ValueError(f"mask shape {mask.shape} differs from SUV shape {suv.shape}; "
                         "resample the mask onto the PET grid")
    if mask.shape != geometry.shape:
        raise ValueError(f"mask/SUV shape {mask.shape} differs from the geometry's (z, y, x) shape {geometry.shape} "
                         f"(size x, y, z {geometry.size}); pass the PET's own geometry")
    if cue is not None and cue.shape != mask.shape:
        raise ValueError(f"cue shape {cue.shape} differs from mask shape {mask.shape}; pass the cue on the PET grid")


def pet_readout(mask: np.ndarray, suv: np.ndarray, geometry: Geometry, cue: np.ndarray | None = None,
                cue_threshold: float = 0.5) -> Readout:
    """TMTV, TLG, SUVmax/mean/peak of a study and of each of its lesions.

    Args:
        mask: lesion mask (z, y, x); non-zero is lesion.
        suv: PET in SUV on the same grid.
        geometry: the PET's grid (spacing for volumes and the peak sphere, world centroids).
        cue: optional location cue on the same grid; a lesion is cued if any voxel exceeds
            ``cue_threshold``.
        cue_threshold: see ``cue``.

    Returns:
        The study readout, lesions ordered by decreasing volume.

    Raises:
        ValueError: shapes differ from each other or from the geometry, or the SUV is not finite
            inside the mask or within the peak sphere's reach of a lesion.
    """
    mask, suv = np.asarray(mask), np.asarray(suv)
    cue = None if cue is None else np.asarray(cue)
    _validate(mask, suv, geometry, cue)
    labels, n = cc3d.connected_components(mask != 0, connectivity=CONNECTIVITY, return_N=True)
    if n == 0:
        return Readout(0.0, 0.0, None, None, None, 0, ())
    flat = np.flatnonzero(labels)  # C order
    order = np.argsort(labels.ravel()[flat], kind="stable")  # group by label, C order kept within
    flat = flat[order]
    lab = labels.ravel()[flat]
    starts = np.flatnonzero(np.r_[True, lab[1:] != lab[:-1]])
    counts = np.diff(np.r_[starts, lab.size])
    coords = np.unravel_index(flat, labels.shape)
    values = np.asarray(suv[coords], dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        raise ValueError(f"SUV holds {int(bad.sum())} non-finite voxels inside the mask, first at (z, y, x) "
                         f"{tuple(int(c[bad][0]) for c in coords)}; check the SUV conversion")
    sums, maxima = np.add.reduceat(values, starts), np.maximum.reduceat(values, starts)
    centres = np.stack([np.add.reduceat(c.astype(np.float64), starts) for c in coords], 1) / counts[:, None]
    lows = np.stack([np.minimum.reduceat(c, starts) for c in coords], 1)
    highs = np.stack([np.maximum.reduceat(c, starts) for c in coords], 1) + 1
    cued = None
    if cue is not None:
        cued = np.add.reduceat((cue[coords] > cue_threshold).astype(np.int64), starts) > 0
    world = geometry.index_to_world(centres[:, ::-1])  # index_to_world wants (x, y, z)
    offsets = sphere_offsets(np.asarray(geometry.spacing[::-1], dtype=np.float64))
    vv = geometry.voxel_volume_ml
    lesions = []
    for rank, i in enumerate(np.lexsort((flat[starts], -counts))):
        box = tuple(map(slice, lows[i], highs[i]))
        volume, mean = float(counts[i] * vv), float(sums[i] / counts[i])
        lesions.append(Lesion(
            lesion_id=rank + 1, voxels=int(counts[i]), volume_ml=volume,
            centroid_lps_mm=tuple(float(v) for v in world[i]), suvmax=float(maxima[i]), suvmean=mean,
            suvpeak=_peak(suv, labels[box] == lab[starts[i]], lows[i], offsets), tlg_ml=mean * volume,
            cue=None if cued is None else bool(cued[i])))
    return Readout(tmtv_ml=float(lab.size * vv), tlg_ml=float(sum(les.tlg_ml for les in lesions)),
                   suvmax=float(values.max()), suvmean=float(values.sum() / values.size),
                   suvpeak=max(les.suvpeak for les in lesions), lesion_count=int(n), lesions=tuple(lesions))


def lesion_rows(case_id: str, readout: Readout) -> list[dict]:
    """One dict per lesion with the keys of ``LESION_CSV_FIELDS`` (cue as "yes", "no" or "")."""
    return [dict(zip(LESION_CSV_FIELDS, (
        case_id, les.lesion_id, *les.centroid_lps_mm, les.volume_ml, les.suvmax, les.suvmean, les.suvpeak,
        les.tlg_ml, les.voxels, "" if les.cue is None else ("yes" if les.cue else "no"))))
        for les in readout.lesions]
