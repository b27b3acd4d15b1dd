"""Shapes of the phantom body, in a body frame of millimetres, painted with partial volume.

Body frame: ``u`` towards the patient's left, ``v`` towards posterior, ``d`` downwards from
the vertex. Every shape is axis-aligned in that frame, which keeps painting a matter of
broadcasting three 1D coordinate arrays (no full-volume coordinate grids).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np


@dataclass(frozen=True)
class Ellipsoid:
    """An axis-aligned ellipsoid: centre (u, v, d) and semi-axes (au, av, ad), mm."""

    center: tuple[float, float, float]
    semi: tuple[float, float, float]

    def shrunk(self, t: float) -> "Ellipsoid":
        return replace(self, semi=tuple(max(s - t, 0.5) for s in self.semi))

    def bounds(self) -> tuple[tuple[float, float], ...]:
        return tuple((c - s, c + s) for c, s in zip(self.center, self.semi))

    def distance(self, u: np.ndarray, v: np.ndarray, d: np.ndarray) -> np.ndarray:
        """Approximate signed distance to the surface (mm, negative inside)."""
        (cu, cv, cd), (au, av, ad) = self.center, self.semi
        q = np.sqrt(((u - cu) / au) ** 2 + ((v - cv) / av) ** 2 + ((d - cd) / ad) ** 2)
        return (q - 1.0) * float(np.cbrt(au * av * ad))


@dataclass(frozen=True)
class Tube:
    """A stack of axis-aligned ellipses along d; centre and semi-axes linear between knots.

    ``knots`` are d positions (increasing); ``cu``, ``cv``, ``a`` (along u) and ``b`` (along
    v) give the cross-section at each knot. The tube is closed flat at its first and last knot.
    """

    knots: tuple[float, ...]
    cu: tuple[float, ...]
    cv: tuple[float, ...]
    a: tuple[float, ...]
    b: tuple[float, ...]

    def shrunk(self, t: float) -> "Tube":
        return replace(self, a=tuple(max(x - t, 0.5) for x in self.a), b=tuple(max(x - t, 0.5) for x in self.b))

    def bounds(self) -> tuple[tuple[float, float], ...]:
        cu, cv, a, b = (np.asarray(x) for x in (self.cu, self.cv, self.a, self.b))
        return ((float((cu - a).min()), float((cu + a).max())),
                (float((cv - b).min()), float((cv + b).max())),
                (self.knots[0], self.knots[-1]))

    def distance(self, u: np.ndarray, v: np.ndarray, d: np.ndarray) -> np.ndarray:
        """Approximate signed distance (mm): in-plane ellipse distance, capped at the ends."""
        dd = d.reshape(-1)
        cu, cv, a, b = (np.interp(dd, self.knots, k).reshape(d.shape) for k in (self.cu, self.cv, self.a, self.b))
        q = np.sqrt(((u - cu) / a) ** 2 + ((v - cv) / b) ** 2)
        inplane = (q - 1.0) * np.sqrt(a * b)
        along = np.maximum(self.knots[0] - d, d - self.knots[-1])
        return np.maximum(inplane, along)


@dataclass(frozen=True)
class Tissue:
    """What a shape is filled with: SUV and Hounsfield units."""

    suv: float
    hu: float


@dataclass(frozen=True)
class Part:
    """One painted structure. Later parts are painted over earlier ones."""

    name: str
    shape: Ellipsoid | Tube
    tissue: Tissue


@dataclass(frozen=True)
class Lesion:
    """A lesion: its shape, uptake and CT density, and the site it was placed at.

    ``relative``: ``suv`` is a contrast over the local background (the wide variety), not
    the SUV painted.
    """

    site: str
    shape: Ellipsoid
    suv: float
    hu: float
    relative: bool = False

    @property
    def diameter_mm(self) -> float:
        return 2.0 * float(np.cbrt(np.prod(self.shape.semi)))
