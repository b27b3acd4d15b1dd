"""Synthetic whole-body FDG-PET/CT studies as arrays (no file I/O, no SimpleITK)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from ..geometry import Geometry
from ..spec import AUTOPET_SPACING_ZYX_MM
from .anatomy import AIR, sample_anatomy
from .render import BodyGrid, blur, noise_gain, occupancy, paint


@dataclass(frozen=True)
class GridSpec:
    """A phantom size: numpy shape (z, y, x) and spacing (z, y, x) in mm."""

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]


SIZES = {
    "tiny": GridSpec((64, 40, 48), (15.3, 12.0, 12.0)),
    "small": GridSpec((160, 112, 136), (6.1, 4.2, 4.2)),
    "full": GridSpec((326, 400, 400), AUTOPET_SPACING_ZYX_MM),  # the autoPET PET grid
}

PET_FWHM_MM = (6.0, 7.0)
PET_NOISE = 0.2  # std of the blurred SUV noise, times sqrt(SUV)
CT_NOISE_HU = 12.0


@dataclass(frozen=True)
class LesionInfo:
    """Where a lesion ended up: site, centre (LPS world mm), diameter, SUV, SEG voxels."""

    site: str
    center_world: tuple[float, float, float]
    diameter_mm: float
    suv: float
    voxels: int


@dataclass
class PhantomStudy:
    """One phantom study on its PET grid; arrays are (z, y, x)."""

    case_id: str
    study_name: str
    pet: np.ndarray           # SUV, float32
    ct: np.ndarray            # HU, int16, on the PET grid (autoPET's CTres)
    seg: np.ndarray           # lesion mask, uint8
    geometry: Geometry
    lesions: list[LesionInfo] = field(default_factory=list)


def has_lesions(index: int, seed: int) -> bool:
    """Half of the studies have lesions, alternating with the index (as autoPET: ~half)."""
    return (index + seed) % 2 == 0


def make_phantom(index: int, seed: int = 0, size: str = "small") -> PhantomStudy:
    """Generate study ``index`` of the set drawn with ``seed``; the same inputs, the same study.

    Raises:
        ValueError: unknown size.
    """
    if size not in SIZES:
        raise ValueError(f"unknown phantom size {size!r}; use one of {', '.join(SIZES)}")
    spec = SIZES[size]
    rng = np.random.default_rng([seed, index])
    parts, lesions, _scale = sample_anatomy(rng, has_lesions(index, seed))
    geometry, grid, to_world = _place_grid(rng, spec)

    pet = np.zeros(spec.shape, np.float32)
    ct = np.full(spec.shape, AIR.hu, np.float32)
    for part in parts:
        hit = occupancy(grid, part.shape)
        if hit is not None:
            paint(pet, *hit, part.tissue.suv)
            paint(ct, *hit, part.tissue.hu)
    seg = np.zeros(spec.shape, np.uint8)
    infos = []
    for lesion in lesions:
        hit = occupancy(grid, lesion.shape)
        if hit is None:
            continue
        box, occ = hit
        paint(pet, box, occ, lesion.suv)
        paint(ct, box, occ, lesion.hu)
        inside = occ >= 0.5
        if not inside.any():  # smaller than a voxel: the voxel it covers most
            inside = occ == occ.max()
        seg[box] |= inside.astype(np.uint8)
        infos.append(LesionInfo(lesion.site, to_world(lesion.shape.center), lesion.diameter_mm,
                                lesion.suv, int(inside.sum())))

    pet = _pet_blur_and_noise(rng, pet, spec.spacing)
    ct += rng.standard_normal(spec.shape, dtype=np.float32) * np.float32(CT_NOISE_HU)
    ct_int16 = np.clip(np.rint(ct), -1024, 3071).astype(np.int16)
    digest = hashlib.sha1(f"l2s-phantom-{seed}-{index}".encode()).hexdigest()
    date = f"{int(rng.integers(1, 13)):02d}-{int(rng.integers(1, 29)):02d}-{int(rng.integers(2002, 2019))}"
    study_name = f"{date}-NA-PET-CT Ganzkoerper  primaer mit KM-{int(digest[10:15], 16) % 100000:05d}"
    return PhantomStudy(f"PETCT_{digest[:10]}", study_name, pet, ct_int16, seg, geometry, infos)


def _place_grid(rng: np.random.Generator, spec: GridSpec):
    """The PET grid with real header habits (LPS, x and y flipped, non-zero origin) and
    the body-frame coordinates of its voxels."""
    nz, ny, nx = spec.shape
    sz, sy, sx = spec.spacing
    bx, by = rng.uniform(-15, 15), rng.uniform(-15, 15)      # patient off the scanner axis
    z_vertex = rng.uniform(-120.0, -40.0)                     # table position
    top = z_vertex + rng.uniform(10.0, 25.0)
    origin = (bx + (nx - 1) / 2 * sx, by + 10.0 + (ny - 1) / 2 * sy, top - (nz - 1) * sz)
    geometry = Geometry((nx, ny, nz), (sx, sy, sz), tuple(float(o) for o in origin),
                        (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0))
    grid = BodyGrid(
        d=(z_vertex - (origin[2] + np.arange(nz) * sz)).astype(np.float32),
        v=(origin[1] - np.arange(ny) * sy - by).astype(np.float32),
        u=(origin[0] - np.arange(nx) * sx - bx).astype(np.float32),
        ramp=float(np.cbrt(sx * sy * sz)),
    )

    def to_world(c):
        u, v, d = c
        return (float(u + bx), float(v + by), float(z_vertex - d))

    return geometry, grid, to_world


def _pet_blur_and_noise(rng: np.random.Generator, activity: np.ndarray, spacing) -> np.ndarray:
    """Blur the activity to the scanner's resolution with correlated, count-like noise.

    Noise is added before the blur (so it is spatially correlated like reconstructed PET),
    scaled so that after the blur its std is ``PET_NOISE * sqrt(SUV)``.
    """
    fwhm = rng.uniform(*PET_FWHM_MM)
    sigmas = tuple(fwhm / 2.3548 / s for s in spacing)
    amplitude = np.float32(PET_NOISE / noise_gain(sigmas))
    noisy = rng.standard_normal(activity.shape, dtype=np.float32)
    noisy *= np.sqrt(activity + np.float32(0.005)) * amplitude
    noisy += activity
    out = blur(noisy, sigmas)
    np.maximum(out, 0.0, out=out)
    return out
