"""OpenVINO IR (``.xml`` + ``.bin``) from the fp32 ONNX graphs, checked against PyTorch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from l2s_engine.backends.base import import_or_explain

INSTALL = "pip install 'l2s-engine[openvino]' (or pip install openvino)"


def openvino_missing() -> str | None:
    """Why IR cannot be built here (openvino not installed), or None."""
    import importlib.util

    return None if importlib.util.find_spec("openvino") else f"openvino is not installed ({INSTALL})"


def export_ir(onnx_path: Path, xml_path: Path) -> tuple[Path, Path]:
    """Convert the fp32 ONNX graph to IR with fp32 weights; returns (xml, bin).

    ``save_model`` would store the weights as fp16 by default; the IR keeps them in fp32 and
    the runtime chooses the compute precision (fp32, or bf16 where the gate passed).
    """
    ov = import_or_explain("openvino", "openvino", INSTALL)
    model = ov.convert_model(str(onnx_path))
    ov.save_model(model, str(xml_path), compress_to_fp16=False)
    return Path(xml_path), Path(xml_path).with_suffix(".bin")


class OvModule(torch.nn.Module):
    """An IR model compiled for the CPU in strict fp32, behind the nn.Module call convention
    (for ``parity.max_module_difference``)."""

    def __init__(self, xml_path: Path, precision: str = "f32"):
        super().__init__()
        ov = import_or_explain("openvino", "openvino", INSTALL)
        self.compiled = ov.Core().compile_model(str(xml_path), "CPU", {"INFERENCE_PRECISION_HINT": precision})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.compiled({0: x.detach().cpu().numpy().astype(np.float32)})[0]
        return torch.from_numpy(np.array(out, dtype=np.float32))
