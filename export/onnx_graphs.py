"""ONNX export of the two networks (fp32) and their fp16 twins.

Graphs take and return float32 with a dynamic batch axis: ``loc2d``: input ``slices``
(N, in_slices, H, W) -> output ``logits`` (N, 1, H, W); ``seg3d``: input ``windows``
(N, 2, D, H, W) -> output ``logits`` (N, 1, D, H, W). Outputs are logits: the runtime applies
the sigmoid (2D) or blends logits before it (3D).
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import onnx
import torch

from l2s_engine.spec import Spec

from .stable_norm import for_onnxruntime

log = logging.getLogger("l2s_export")

OPSET = 17
IO_NAMES = {"loc2d": ("slices", "logits"), "seg3d": ("windows", "logits")}
# Kept in float32 in the fp16 graph: normalisations (InstanceNorm over a near-constant window
# amplifies rounding, REFERENCE.md) and the reductions/divisions around them.
# Resize stays float32 because its `scales` input must be float32 in ONNX (the converter
# would turn that constant into float16, which ONNX Runtime rejects).
FP32_OPS = ["InstanceNormalization", "BatchNormalization", "GroupNormalization", "LayerNormalization",
            "ReduceMean", "ReduceSumSquare", "Sqrt", "Div", "Pow", "Resize"]


def input_shape(role: str, spec: Spec, batch: int = 1) -> tuple[int, ...]:
    """Shape of a network input for ``batch`` samples."""
    if role == "loc2d":
        return (batch, spec.loc2d.in_slices, *spec.loc2d.slice_shape)
    if role == "seg3d":
        return (batch, 2, *spec.seg3d.patch)
    raise ValueError(f"unknown role {role!r}")


def export_fp32(model: torch.nn.Module, role: str, spec: Spec, path: Path, staged_norm: bool = True) -> Path:
    """Export ``model`` (eval mode) to ONNX opset 17 with a dynamic batch axis; checked.

    Args:
        staged_norm: compute InstanceNorm statistics explicitly in short sums (accurate in
            ONNX Runtime, see ``stable_norm``); False keeps the InstanceNormalization operator.
    """
    in_name, out_name = IO_NAMES[role]
    sample = torch.zeros(input_shape(role, spec, batch=2))
    tmp = Path(path).with_name(f".{Path(path).name}.partial")
    torch.onnx.export(for_onnxruntime(model) if staged_norm else model.eval(), (sample,), str(tmp), input_names=[in_name], output_names=[out_name],
                      dynamic_axes={in_name: {0: "batch"}, out_name: {0: "batch"}}, opset_version=OPSET,
                      do_constant_folding=True, dynamo=False)
    onnx.checker.check_model(str(tmp))
    os.replace(tmp, path)
    return Path(path)


def export_fp16(model: torch.nn.Module, role: str, spec: Spec, path: Path) -> Path:
    """The fp16 graph of ``model``: exported with the InstanceNormalization operator, then
    converted by ``convert_fp16``."""
    plain = Path(path).with_name(f".{Path(path).name}.fp32-plain.onnx")
    try:
        export_fp32(model, role, spec, plain, staged_norm=False)
        return convert_fp16(plain, path)
    finally:
        plain.unlink(missing_ok=True)


def convert_fp16(src: Path, dst: Path) -> Path:
    """The fp16 twin of an fp32 graph: weights and arithmetic in fp16, except ``FP32_OPS``;
    graph inputs and outputs stay float32 (casts inserted inside the graph).

    This is the graph TensorRT compiles as a strongly typed network, and the one ONNX Runtime
    runs on the CPU to measure fp16 accuracy.
    """
    from onnxconverter_common import float16

    model = onnx.load(str(src))
    with warnings.catch_warnings(record=True) as caught:
        # one warning per weight whose magnitude is below fp16's range, raised to +-1e-7 by the
        # converter: expected for trained weights, measured by the fp16/fp32 agreement check
        warnings.simplefilter("always")
        half = float16.convert_float_to_float16(model, keep_io_types=True, op_block_list=FP32_OPS)
    clamped = sum("will be truncated to" in str(w.message) for w in caught)
    for w in caught:
        if "will be truncated to" not in str(w.message):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if clamped:
        log.debug("%s: %d fp32 weight value(s) below fp16's range set to +-1e-7 (their effect is in the "
                 "fp16/fp32 agreement check)", Path(dst).name, clamped)
    onnx.checker.check_model(half)
    tmp = Path(dst).with_name(f".{Path(dst).name}.partial")
    onnx.save(half, str(tmp))
    os.replace(tmp, dst)
    return Path(dst)
