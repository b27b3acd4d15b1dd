"""Synthetic whole-body FDG-PET/CT studies for the demo, tests and benchmarks.

``make_phantom`` returns arrays (numpy only, so GPU checks run without SimpleITK or file
I/O); ``l2s_engine.phantoms.files.write_study`` writes them in the autoPET or
grand-challenge layout.
"""

from .study import SIZES, LesionInfo, PhantomStudy, has_lesions, make_phantom

__all__ = ["SIZES", "LesionInfo", "PhantomStudy", "has_lesions", "make_phantom"]
