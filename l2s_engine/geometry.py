"""Image grid geometry as plain numbers (no SimpleITK import).

All vectors are in SimpleITK/ITK order (x, y, z) and in LPS world millimetres; numpy arrays
of a volume are indexed (z, y, x). ``direction`` is the row-major 3x3 matrix whose column j
is the world direction of index axis j.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Geometry:
    """The grid of a 3D image: what a mask must copy to overlay its PET exactly."""

    size: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)

    @property
    def shape(self) -> tuple[int, int, int]:
        """The numpy shape (z, y, x) of a volume on this grid."""
        return (self.size[2], self.size[1], self.size[0])

    @property
    def voxel_volume_ml(self) -> float:
        """Volume of one voxel in millilitres (mm^3 / 1000)."""
        return float(np.prod(self.spacing)) / 1000.0

    def direction_matrix(self) -> np.ndarray:
        """The direction as a 3x3 float64 matrix."""
        return np.asarray(self.direction, dtype=np.float64).reshape(3, 3)

    def index_to_world(self, index_xyz: np.ndarray) -> np.ndarray:
        """World LPS coordinates (mm) of continuous indices given in (x, y, z) order."""
        index_xyz = np.asarray(index_xyz, dtype=np.float64)
        scaled = index_xyz * np.asarray(self.spacing)
        return np.asarray(self.origin) + scaled @ self.direction_matrix().T

    def world_to_index(self, world: np.ndarray) -> np.ndarray:
        """Continuous (x, y, z) indices of world LPS points (mm); the inverse of ``index_to_world``."""
        offset = np.asarray(world, dtype=np.float64) - np.asarray(self.origin)
        return np.linalg.solve(self.direction_matrix(), offset.T).T / np.asarray(self.spacing)

    def corners_world(self) -> np.ndarray:
        """The 8 outer corners of the grid's box (voxel edges, not centres), world mm, (8, 3)."""
        lo, hi = np.full(3, -0.5), np.asarray(self.size, dtype=np.float64) - 0.5
        corners = np.array([[(lo, hi)[b >> k & 1][k] for k in range(3)] for b in range(8)])
        return self.index_to_world(corners)

    def coverage_by(self, other: "Geometry") -> float:
        """The share (0-1) of this grid's box that ``other``'s box covers.

        ``other``'s box is taken as its bounding box in this grid's index space (exact when the
        two grids' axes are parallel, as for a PET and CT of one acquisition).
        """
        inside = self.world_to_index(other.corners_world())
        lo = np.maximum(inside.min(axis=0), -0.5)
        hi = np.minimum(inside.max(axis=0), np.asarray(self.size, dtype=np.float64) - 0.5)
        return float(np.prod(np.clip(hi - lo, 0.0, None)) / np.prod(np.asarray(self.size, dtype=np.float64)))

    def same_grid(self, other: "Geometry", tol_mm: float = 1e-3, tol_dir: float = 1e-5) -> bool:
        """Whether two grids coincide voxel for voxel, within small tolerances."""
        return (
            self.size == other.size
            and np.allclose(self.spacing, other.spacing, rtol=0, atol=tol_mm)
            and np.allclose(self.origin, other.origin, rtol=0, atol=tol_mm)
            and np.allclose(self.direction, other.direction, rtol=0, atol=tol_dir)
        )

    def differences(self, other: "Geometry") -> list[str]:
        """Names of the properties in which ``other`` differs (for log messages)."""
        out = []
        if self.size != other.size:
            out.append(f"size {other.size} vs {self.size}")
        for name in ("spacing", "origin", "direction"):
            mine, theirs = getattr(self, name), getattr(other, name)
            if not np.allclose(mine, theirs, rtol=0, atol=1e-3 if name != "direction" else 1e-5):
                out.append(f"{name} {tuple(round(v, 4) for v in theirs)} vs "
                           f"{tuple(round(v, 4) for v in mine)}")
        return out

    def anterior_posterior_axis(self) -> int:
        """The numpy axis (0=z, 1=y, 2=x) that runs most nearly anterior-posterior.

        Coronal planes are planes of constant anterior-posterior position: the slices taken
        along this axis. Read from the direction matrix, never assumed.
        """
        world_y_of_index_axes = np.abs(self.direction_matrix()[1, :])
        itk_axis = int(np.argmax(world_y_of_index_axes))
        return 2 - itk_axis

    def superior_inferior_axis(self) -> int:
        """The numpy axis that runs most nearly head-foot."""
        itk_axis = int(np.argmax(np.abs(self.direction_matrix()[2, :])))
        return 2 - itk_axis
