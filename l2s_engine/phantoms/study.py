"""Synthetic whole-body FDG-PET/CT studies as arrays (no file I/O, no SimpleITK)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from ..geometry import Geometry
from ..spec import AUTOPET_SPACING_ZYX_MM
from .anatomy import AIR, WIDE, sample_anatomy, sample_wide_lesions
from .render import BodyGrid, blur, noise_gain, occupancy, paint
from .wide import Pose, ScanSettings, ct_hu, draw_pose, draw_scan, fit_grid


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

VARIETIES = ("standard", "wide")
PET_FWHM_MM = (6.0, 7.0)
PET_NOISE = 0.2  # std of the blurred SUV noise, times sqrt(SUV)
CT_NOISE_HU = 12.0


@dataclass(frozen=True)
class LesionInfo:
    """Where a lesion ended up: site, centre (LPS world mm), diameter, SUV, SEG voxels.

    ``contrast`` (wide variety only): the SUV above the local background (the median of the
    activity the lesion replaced, over its SEG voxels), so ``suv`` = background + contrast.
    """

    site: str
    center_world: tuple[float, float, float]
    diameter_mm: float
    suv: float
    voxels: int
    contrast: float | None = None


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
    scan: ScanSettings | None = None   # wide variety: how it was acquired
    pose: Pose | None = None           # wide variety: how the patient lay


def has_lesions(index: int, seed: int) -> bool:
    """Half of the studies have lesions, alternating with the index (as autoPET: ~half)."""
    return (index + seed) % 2 == 0


def make_phantom(index: int, seed: int = 0, size: str = "small", variety: str = "standard") -> PhantomStudy:
    """Generate study ``index`` of the set drawn with ``seed``; the same inputs, the same study.

    Args:
        variety: ``standard``: the grid of ``size``, one scanner, one patient habitus (what
            the tests, the demo and the benchmarks pin). ``wide``: per study a voxel spacing
            (``size`` then only picks its range: 2-5 mm, or 8-16 mm for ``tiny``) with the grid
            fitted to the body, body size and pose, organ uptake from low to high, 1-12
            lesions of 4-40 mm at 2-20 SUV over their background at twelve sites, PET
            resolution and noise, CT noise and contrast; see ``make_wide_phantom``.

    Raises:
        ValueError: unknown size or variety.
    """
    if size not in SIZES:
        raise ValueError(f"unknown phantom size {size!r}; use one of {', '.join(SIZES)}")
    if variety not in VARIETIES:
        raise ValueError(f"unknown phantom variety {variety!r}; use one of {', '.join(VARIETIES)}")
    if variety == "wide":
        return make_wide_phantom(index, seed, size)
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
        inside = _label_voxels(occ)
        seg[box] |= inside.astype(np.uint8)
        infos.append(LesionInfo(lesion.site, to_world(lesion.shape.center), lesion.diameter_mm,
                                lesion.suv, int(inside.sum())))

    pet = _pet_blur_and_noise(rng, pet, spec.spacing)
    ct += rng.standard_normal(spec.shape, dtype=np.float32) * np.float32(CT_NOISE_HU)
    ct_int16 = np.clip(np.rint(ct), -1024, 3071).astype(np.int16)
    case_id, study_name = _names(rng, f"l2s-phantom-{seed}-{index}")
    return PhantomStudy(case_id, study_name, pet, ct_int16, seg, geometry, infos)


def make_wide_phantom(index: int, seed: int = 0, size: str = "small") -> PhantomStudy:
    """Study ``index`` of the wide set drawn with ``seed`` (see ``make_phantom``).

    Body, lesions, scanner and noise draw from streams of their own, so that, for one
    (index, seed), the lesions do not move the body and the body does not move the noise.
    """
    body_rng, lesion_rng, scan_rng, noise_rng = (np.random.default_rng(child) for child in
                                                  np.random.SeedSequence([seed, index]).spawn(4))
    scan = draw_scan(scan_rng, size)
    pose = draw_pose(body_rng)
    parts, _, scale = sample_anatomy(body_rng, False, WIDE, arms_up=pose.arms_up)
    lesions = sample_wide_lesions(lesion_rng, parts, scale) if has_lesions(index, seed) else []
    geometry, grid, table_grid, to_world = fit_grid(scan_rng, scan, pose, parts, scale)

    pet = np.zeros(grid.shape, np.float32)
    ct = np.full(grid.shape, AIR.hu, np.float32)
    for part in parts:
        hit = occupancy(table_grid if part.name == "table" else grid, part.shape)  # the table does not roll
        if hit is not None:
            paint(pet, *hit, part.tissue.suv)
            paint(ct, *hit, ct_hu(part.name, part.tissue.hu, scan))
    seg, infos = _paint_relative_lesions(pet, ct, grid, lesions, to_world, scan)

    pet = _psf_and_noise(noise_rng, pet, scan.spacing, scan.pet_fwhm_mm, scan.pet_noise)
    ct += noise_rng.standard_normal(grid.shape, dtype=np.float32) * np.float32(scan.ct_noise_hu)
    ct_int16 = np.clip(np.rint(ct), -1024, 3071).astype(np.int16)
    case_id, study_name = _names(scan_rng, f"l2s-phantom-wide-{seed}-{index}")  # ids apart from standard's
    return PhantomStudy(case_id, study_name, pet, ct_int16, seg, geometry, infos, scan, pose)


def _paint_relative_lesions(pet, ct, grid, lesions, to_world, scan: ScanSettings):
    """Paint lesions into the body's PET and CT (in place), each ``lesion.suv`` above what it
    replaces when ``relative`` (a liver lesion above the liver, a node above fat).

    Returns:
        (the lesion label: every lesion's ``_label_voxels``, LesionInfo per lesion painted).
    """
    seg = np.zeros(pet.shape, np.uint8)
    infos = []
    for lesion in lesions:
        hit = occupancy(grid, lesion.shape)
        if hit is None:
            continue
        box, occ = hit
        inside = _label_voxels(occ)
        background = float(np.median(pet[box][inside])) if lesion.relative else 0.0
        suv = background + lesion.suv
        paint(pet, box, occ, suv)
        paint(ct, box, occ, ct_hu("lesion", lesion.hu, scan))
        seg[box] |= inside.astype(np.uint8)
        infos.append(LesionInfo(lesion.site, to_world(lesion.shape.center), lesion.diameter_mm, suv,
                                int(inside.sum()), contrast=lesion.suv if lesion.relative else None))
    return seg, infos


def _names(rng: np.random.Generator, key: str) -> tuple[str, str]:
    """Case id (from ``key``) and a TCIA-style study folder name with a random date."""
    digest = hashlib.sha1(key.encode()).hexdigest()
    date = f"{int(rng.integers(1, 13)):02d}-{int(rng.integers(1, 29)):02d}-{int(rng.integers(2002, 2019))}"
    return f"PETCT_{digest[:10]}", f"{date}-NA-PET-CT Ganzkoerper  primaer mit KM-{int(digest[10:15], 16) % 100000:05d}"


def _label_voxels(occ: np.ndarray) -> np.ndarray:
    """The voxels a lesion labels: those it fills at least half; if none (smaller than a
    voxel), the voxel it covers most."""
    inside = occ >= 0.5
    return inside if inside.any() else occ == occ.max()


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
    return _psf_and_noise(rng, activity, spacing, rng.uniform(*PET_FWHM_MM), PET_NOISE)


def _psf_and_noise(rng: np.random.Generator, activity: np.ndarray, spacing, fwhm: float, noise: float) -> np.ndarray:
    """``_pet_blur_and_noise`` at a given FWHM (mm) and noise level."""
    sigmas = tuple(fwhm / 2.3548 / s for s in spacing)
    amplitude = np.float32(noise / noise_gain(sigmas))
    noisy = rng.standard_normal(activity.shape, dtype=np.float32)
    noisy *= np.sqrt(activity + np.float32(0.005)) * amplitude
    noisy += activity
    out = blur(noisy, sigmas)
    np.maximum(out, 0.0, out=out)
    return out
