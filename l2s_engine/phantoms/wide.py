"""The per-study draws of the ``wide`` phantom variety: scanner, patient pose, and a grid fitted to the body.

The standard phantoms share one grid per size and one scanner; a model trained on them has
seen one spacing, one resolution and one noise level. Here each study draws its own voxel
spacing (the grid shape follows from the body's extent), PET resolution and noise, CT noise
and contrast, and how the patient lies: rolled, leaned, arms up or down, off the scanner axis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from ..geometry import Geometry
from .render import BodyGrid, PosedGrid
from .shapes import Part

# Spacing range (mm, drawn separately in-plane and axially) by size: ``small`` and ``full`` draw
# the clinical 2-5 mm; ``tiny`` is about four times coarser, to keep the tests fast.
WIDE_SPACING_MM = {"tiny": (8.0, 16.0), "small": (2.0, 5.0), "full": (2.0, 5.0)}
WIDE_PET_FWHM_MM = (4.0, 10.0)     # digital PET with PSF recon .. older scanners, heavy smoothing
WIDE_PET_NOISE = (0.08, 0.45)      # std of the blurred noise, times sqrt(SUV) (standard: 0.2)
WIDE_CT_NOISE_HU = (5.0, 40.0)     # diagnostic CT .. low-dose attenuation CT
WIDE_CT_SCALE = (0.85, 1.2)        # tissue HU times this: the tube voltage (kVp)
WIDE_ROLL_DEG = 6.0                # roll about the long axis, +-
WIDE_LEAN = (0.05, (-0.01, 0.06))  # sideways lean +-, forward lean (head raised on a pillow), mm per mm
# HU added to a tissue at full IV contrast enhancement (0 in a study without contrast).
ENHANCEMENT_HU = {"blood": 180.0, "aorta": 180.0, "kidney": 150.0, "heart": 80.0, "spleen": 80.0, "liver": 50.0}


@dataclass(frozen=True)
class ScanSettings:
    """How one wide study was acquired."""

    spacing: tuple[float, float, float]   # (z, y, x) mm
    pet_fwhm_mm: float
    pet_noise: float
    ct_noise_hu: float
    ct_scale: float                       # tissue HU times this
    ct_enhancement: float                 # 0 (none) .. 1 (full IV contrast), times ENHANCEMENT_HU


@dataclass(frozen=True)
class Pose:
    """How the patient lies: roll (degrees) about the long axis, leans (mm per mm), arms."""

    roll_deg: float
    lean_u: float
    lean_v: float
    arms_up: bool


def draw_scan(rng: np.random.Generator, size: str) -> ScanSettings:
    """Spacing (square pixels in-plane, the axial spacing drawn on its own), PET and CT settings."""
    lo, hi = WIDE_SPACING_MM[size]
    axial, inplane = (float(x) for x in rng.uniform(lo, hi, 2))
    return ScanSettings(
        spacing=(axial, inplane, inplane),
        pet_fwhm_mm=float(rng.uniform(*WIDE_PET_FWHM_MM)),
        pet_noise=float(np.exp(rng.uniform(*np.log(WIDE_PET_NOISE)))),  # log-uniform: as many quiet as noisy
        ct_noise_hu=float(rng.uniform(*WIDE_CT_NOISE_HU)),
        ct_scale=float(rng.uniform(*WIDE_CT_SCALE)),
        ct_enhancement=float(rng.uniform() if rng.uniform() < 0.5 else 0.0),  # half the studies without contrast
    )


def draw_pose(rng: np.random.Generator) -> Pose:
    side, (fwd_lo, fwd_hi) = WIDE_LEAN
    return Pose(roll_deg=float(rng.uniform(-WIDE_ROLL_DEG, WIDE_ROLL_DEG)), lean_u=float(rng.uniform(-side, side)),
                lean_v=float(rng.uniform(fwd_lo, fwd_hi)), arms_up=bool(rng.uniform() < 0.5))


def ct_hu(name: str, hu: float, scan: ScanSettings) -> float:
    """A tissue's CT number in this study: IV contrast in the vessels and perfused organs, then
    the tube voltage's scaling of everything denser than lung (air and lung stay put)."""
    hu = hu + scan.ct_enhancement * ENHANCEMENT_HU.get(name, 0.0)
    return hu * scan.ct_scale if hu > -500.0 else hu


def fit_grid(rng: np.random.Generator, scan: ScanSettings, pose: Pose, parts: list[Part], scale: float):
    """The PET grid of a wide study, sized to hold the whole posed body in-plane.

    Axially it runs from just above the vertex to the thighs (as a whole-body PET does:
    raised hands may be cut off at the top). In-plane it holds every body part and the table's
    thickness, with a margin drawn per side (so the patient is off-centre by a few cm).

    Returns:
        (geometry, posed grid for the body, scanner-frame grid for the table, body frame -> LPS world).
    """
    sz, sy, sx = scan.spacing
    table = next(part.shape for part in parts if part.name == "table")
    table_top, table_bottom = table.cv[0] - table.b[0], table.cv[0] + table.b[0]
    empty = np.zeros(0, np.float32)
    # The patient rolls about the line where the back meets the table and leans about the pelvis.
    posed = PosedGrid(empty, empty, empty, 1.0, math.radians(pose.roll_deg), pose.lean_u, pose.lean_v,
                      (0.0, float(table_top), 800.0 * scale))
    corners = np.concatenate([np.array(np.meshgrid(*part.shape.bounds(), indexing="ij")).reshape(3, -1)
                              for part in parts if part.name != "table"], axis=1)
    u, v, _ = posed.to_scanner(*corners)
    margins = rng.uniform(10.0, 60.0, 4)
    u_hi, u_lo = u.max() + margins[0], u.min() - margins[1]
    v_hi, v_lo = max(v.max(), table_bottom) + margins[2], v.min() - margins[3]
    top = float(rng.uniform(5.0, 40.0))                     # FOV above the vertex, mm
    length = top + scale * float(rng.uniform(980.0, 1120.0))  # down to the thighs, past the groin
    nx, ny, nz = (int(math.ceil(extent / step)) + 1 for extent, step in
                  ((u_hi - u_lo, sx), (v_hi - v_lo, sy), (length, sz)))

    z_vertex = float(rng.uniform(-400.0, 100.0))            # table position
    centre_x, centre_y = rng.uniform(-30.0, 30.0, 2)        # FOV centre off the scanner axis
    origin = (centre_x + (nx - 1) / 2 * sx, centre_y + (ny - 1) / 2 * sy, z_vertex + top - (nz - 1) * sz)
    bx, by = origin[0] - u_hi, origin[1] - v_hi             # body frame -> world: x = u + bx, y = v + by
    geometry = Geometry((nx, ny, nz), (sx, sy, sz), tuple(float(o) for o in origin),
                        (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0))
    axes = dict(d=(z_vertex - (origin[2] + np.arange(nz) * sz)).astype(np.float32),
                v=(v_hi - np.arange(ny) * sy).astype(np.float32),
                u=(u_hi - np.arange(nx) * sx).astype(np.float32),
                ramp=float(np.cbrt(sx * sy * sz)))
    body_grid = replace(posed, **axes)

    def to_world(c):
        su, sv, sd = body_grid.to_scanner(*c)
        return (float(su + bx), float(sv + by), float(z_vertex - sd))

    return geometry, body_grid, BodyGrid(**axes), to_world
