"""Exceptions raised by l2s-engine.

Every error a user can cause has its own class, carries the offending path and value as
attributes, and says in its message what to do about it. Study input faults derive from
:class:`StudyError`, so a many-study run can report one study and go on with the rest.
"""

from __future__ import annotations

from pathlib import Path


class L2SError(Exception):
    """Base class of every error raised on purpose by l2s-engine."""


class StudyError(L2SError):
    """A study's input files cannot be used.

    Attributes:
        path: the offending file or folder.
        value: the offending value (a dimension, a spacing, a voxel count...), or None.
    """

    def __init__(self, path: Path | str, message: str, value: object = None):
        self.path = Path(path)
        self.value = value
        super().__init__(f"{path}: {message}")


class MissingImageError(StudyError):
    """The study has no PET or no CT image where its layout puts one."""


class AmbiguousStudyError(StudyError):
    """A study folder holds several candidate images for one role."""


class UnreadableImageError(StudyError):
    """The image file cannot be read (not an image, truncated, unsupported)."""


class NotAVolumeError(StudyError):
    """The image is not a single-channel 3D volume."""


class NonFiniteVoxelsError(StudyError):
    """The image holds NaN or infinite voxels."""


class BadSpacingError(StudyError):
    """A voxel spacing is zero, negative or not finite."""


class ImageTooLargeError(StudyError):
    """An image header declares more voxels than the run's memory budget allows."""


class CoverageError(StudyError):
    """The CT covers too little of the PET's field of view to be used."""


class GeometryMismatchError(StudyError):
    """An image that must share the PET grid (a label, a mask) lies on another grid."""


class OutputError(L2SError):
    """An output cannot be written where it was asked for."""
