"""The GPU path: the CUDA kernels (``kernels.cu``) and the two-stream device pipeline.

Nothing here is imported by the CPU path; CuPy (and cuda-python) are imported only when a
device engine or the kernels are built.
"""
