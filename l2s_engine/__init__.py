"""l2s-engine: high-throughput inference runtime for L2SNet (PET/CT lesion segmentation).

The package is torch-free and imports nothing heavy at import time: the study I/O
(``l2s_engine.io``, SimpleITK) and the optional backends are imported where they are used,
so phantoms and the shape math also run where SimpleITK is absent (e.g. a bare GPU host).
"""

__version__ = "0.1.0"
