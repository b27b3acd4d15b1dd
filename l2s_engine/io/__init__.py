"""Study discovery, loading, validation and mask writing (SimpleITK-based).

Everything here imports SimpleITK; the plain-numpy grid lives in ``l2s_engine.geometry``.
"""

from .discovery import InputPathError, StudyRef, find_studies, sanitize_case_id
from ..geometry import Geometry
from .loading import LoadResult, iter_studies, load_label, load_study
from .study import Study
from .writing import write_mask

__all__ = [
    "Geometry", "InputPathError", "LoadResult", "Study", "StudyRef", "find_studies",
    "iter_studies", "load_label", "load_study", "sanitize_case_id", "write_mask",
]
