"""torch.export artifacts (``*.pt2``): the networks without the training code, for the torch
backend that runs them in fp16 on a GPU where TensorRT is absent.

Saved without sample inputs (torch would pickle them), and read back here with the runtime's
pickle-free reader (``l2s_engine.backends.pt2``), so the export's parity check runs exactly
what the torch backend will load.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from l2s_engine.backends.pt2 import load_program
from l2s_engine.spec import Spec

from .onnx_graphs import input_shape

MAX_BATCH = 64


def export_pt2(model: torch.nn.Module, role: str, spec: Spec, path: Path) -> Path:
    """Save ``torch.export.export(model)`` with a dynamic batch axis (1..MAX_BATCH) to ``path``.

    Weights are stored in float32; the consumer casts the module to fp16 on CUDA.
    """
    sample = torch.zeros(input_shape(role, spec, batch=2))
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    program = torch.export.export(model.eval(), (sample,), dynamic_shapes=({0: batch},))
    program.example_inputs = None  # a pickle in the archive (63 MB for the paper's 3D patch), never needed
    tmp = Path(path).with_name(f".{Path(path).stem}.partial.pt2")  # torch wants the .pt2 suffix
    torch.export.save(program, str(tmp))
    os.replace(tmp, path)
    return Path(path)


def load_pt2(path: Path) -> torch.nn.Module:
    """The callable module of a saved program, read without unpickling (as the torch backend does)."""
    return load_program(path).module()
