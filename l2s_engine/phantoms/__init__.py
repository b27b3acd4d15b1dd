"""Synthetic whole-body FDG-PET/CT studies for the demo, tests and benchmarks.

``make_phantom`` returns arrays (numpy only, so GPU checks run without SimpleITK or file
I/O); ``l2s_engine.phantoms.files.write_study`` writes them in the autoPET or
grand-challenge layout. ``variety="wide"`` draws spacing, patient, uptake, lesions and
scanner per study, for training (``l2s_engine.phantoms.wide``).
"""

from .study import SIZES, VARIETIES, LesionInfo, PhantomStudy, has_lesions, make_phantom

__all__ = ["SIZES", "VARIETIES", "LesionInfo", "PhantomStudy", "has_lesions", "make_phantom"]
