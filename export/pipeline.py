"""The export steps for one or more weights directories (folds) into one engine directory."""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import platform
from pathlib import Path

import numpy as np
import torch

from l2s_engine.manifest import MANIFEST, ModelFile, TensorInfo, manifest_dict, sha256_of
from l2s_engine.phantoms import make_phantom
from l2s_engine.core import InferOptions
from l2s_engine.pipeline import HostEngine
from l2s_engine.preprocess import slices_to_input, to_coronal, intensity_window
from l2s_engine.spec import Spec
from l2s_engine.tiling import pad_amounts
from l2s_training.models import Loc2DNet, Seg3DNet
from l2s_training.weights import load_weights

from .checks import PARITY_LIMIT, ExportError
from .onnx_graphs import IO_NAMES, OPSET, export_fp16, export_fp32, input_shape
from .parity import max_module_difference, max_probability_difference
from .staging import staged_engine_dir
from .torch_program import export_pt2, load_pt2
from .weights_check import check_weight_files

log = logging.getLogger("l2s_export")
AGREEMENT_SEED = 1000  # phantom set of the fp16/fp32 agreement check (the demo weights find lesions there)
BUILDERS = {"loc2d": Loc2DNet, "seg3d": Seg3DNet}


@functools.lru_cache(maxsize=1)
def _parity_phantom():
    return make_phantom(0, seed=0, size="small")


def parity_batches(role: str, spec: Spec) -> list[np.ndarray]:
    """Inputs to compare backends on: uniform noise, and a real-looking phantom batch."""
    rng = np.random.default_rng(0)
    noise = rng.uniform(-1.0, 1.0, input_shape(role, spec, batch=2)).astype(np.float32)
    phantom = _parity_phantom()
    if role == "loc2d":
        coronal = to_coronal(intensity_window(phantom.pet, *spec.loc2d.suv_window), phantom.geometry)
        middle = coronal.shape[0] // 2
        real = slices_to_input(coronal, np.array([middle - 5, middle]), spec.loc2d.resize, spec.loc2d.crop,
                               spec.loc2d.in_slices)
    else:
        pads = pad_amounts(phantom.pet.shape, spec.seg3d.patch)
        pet = np.pad(intensity_window(phantom.pet, *spec.seg3d.suv_window), pads, constant_values=-1.0)
        ct = np.pad(intensity_window(phantom.ct, *spec.seg3d.ct_window), pads, constant_values=-1.0)
        start = [(n - p) // 2 for n, p in zip(pet.shape, spec.seg3d.patch)]
        box = tuple(slice(s, s + p) for s, p in zip(start, spec.seg3d.patch))
        real = np.stack([pet[box], ct[box]])[None]
    return [noise, np.ascontiguousarray(real, dtype=np.float32)]


def _tensor_info(role: str, spec: Spec) -> tuple[tuple[TensorInfo, ...], tuple[TensorInfo, ...]]:
    shape = input_shape(role, spec, batch=-1)
    in_name, out_name = IO_NAMES[role]
    return (TensorInfo(in_name, "float32", shape),), (TensorInfo(out_name, "float32", (-1, 1, *shape[2:])),)


def export_all(weights_dirs: list[Path], spec: Spec, out: Path, tensorrt: bool,
               profiles: dict[str, tuple[int, int, int]], check_studies: int = 3) -> Path:
    """Export every fold's networks into the engine directory ``out``, with its manifest.

    The directory is built beside ``out`` and replaces it whole only after every check passed
    (``staging``): a failed export leaves ``out`` as it was.

    Raises:
        ExportError: a weights file is missing, corrupt or of another spec, or ONNX Runtime
            disagrees with PyTorch by more than PARITY_LIMIT.
        OutputError: ``out`` cannot be replaced (NotAnEngineDirError: it holds other files).
    """
    check_weight_files(weights_dirs, spec)
    with staged_engine_dir(out) as work:
        _build_all(weights_dirs, spec, work, out, tensorrt, profiles, check_studies)
    return out


def _build_all(weights_dirs: list[Path], spec: Spec, out: Path, target: Path, tensorrt: bool,
               profiles: dict[str, tuple[int, int, int]], check_studies: int) -> None:
    """export_all's steps, into the staged folder ``out`` (``target``: where it will go)."""
    files: list[ModelFile] = []
    for fold, wdir in enumerate(weights_dirs):
        for role, build in BUILDERS.items():
            model = load_weights(build(getattr(spec, role)), wdir, role).eval()
            stem = role if len(weights_dirs) == 1 else f"{role}_fold{fold}"
            inputs, outputs = _tensor_info(role, spec)
            batches = parity_batches(role, spec)
            files.append(_onnx_fp32(model, role, fold, stem, spec, out, batches))
            files += _openvino_ir(model, files[-1], out, batches)
            fp16 = export_fp16(model, role, spec, out / f"{stem}_fp16.onnx")
            diff16 = max_probability_difference(model, fp16, batches)
            log.info("%s fold %d: fp16 graph vs PyTorch fp32, max |dp| = %.2e", role, fold, diff16)
            files.append(ModelFile(role, fold, "onnx", "fp16", fp16.name, sha256_of(fp16), inputs, outputs,
                                   {"opset": OPSET, "max_abs_prob_diff_vs_torch_fp32": diff16}))
            files.append(_program(model, role, fold, stem, spec, out, batches))
    info = _info(weights_dirs)
    write_manifest(out, spec, files, info)  # the runtime opens engine directories through it
    info["fp16_agreement"] = fp16_agreement(out, check_studies)
    files = _with_bf16_gate(out, spec, files, info, check_studies)
    if tensorrt:
        from .tensorrt_build import tensorrt_unavailable_reason

        reason = tensorrt_unavailable_reason()
        if reason:
            log.warning("TensorRT plans not built (%s): exported ONNX only. On the GPU host run: "
                        "l2s-export %s -o %s", reason, " ".join(map(str, weights_dirs)), target)
            info["tensorrt"] = f"not built: {reason}"
        else:
            from .tensorrt_build import build_plans

            files += build_plans(out, [f for f in files if f.precision == "fp16"], profiles)
    write_manifest(out, spec, files, info)


def _onnx_fp32(model, role: str, fold: int, stem: str, spec: Spec, out: Path, batches) -> ModelFile:
    """Export one network as an fp32 ONNX graph; ONNX Runtime must match PyTorch."""
    inputs, outputs = _tensor_info(role, spec)
    fp32 = export_fp32(model, role, spec, out / f"{stem}.onnx")
    diff = max_probability_difference(model, fp32, batches)
    log.info("%s fold %d: ONNX Runtime vs PyTorch, max |dp| = %.2e", role, fold, diff)
    if diff > PARITY_LIMIT:
        raise ExportError(f"{fp32}: ONNX Runtime differs from PyTorch by {diff:.2e} in probability "
                          f"(limit {PARITY_LIMIT:g}); the export is not trustworthy")
    return ModelFile(role, fold, "onnx", "fp32", fp32.name, sha256_of(fp32), inputs, outputs,
                     {"opset": OPSET, "max_abs_prob_diff_vs_torch_fp32": diff})


def _openvino_ir(model, onnx_file: ModelFile, out: Path, batches) -> list[ModelFile]:
    """The IR of an fp32 ONNX graph, which OpenVINO in fp32 must run as PyTorch does; none
    (with a warning, once) where openvino is not installed."""
    from .openvino_ir import OvModule, export_ir, openvino_missing

    missing = openvino_missing()
    if missing:
        if onnx_file.role == "loc2d" and onnx_file.fold == 0:
            log.warning("OpenVINO IR not built (%s): the openvino backend cannot run this engine directory", missing)
        return []
    xml, weights = export_ir(out / onnx_file.path, (out / onnx_file.path).with_suffix(".xml"))
    diff = max_module_difference(model, OvModule(xml), batches)
    log.info("%s fold %d: OpenVINO fp32 vs PyTorch, max |dp| = %.2e", onnx_file.role, onnx_file.fold, diff)
    if diff > PARITY_LIMIT:
        raise ExportError(f"{xml}: OpenVINO (fp32) differs from PyTorch by {diff:.2e} in probability "
                          f"(limit {PARITY_LIMIT:g}); the export is not trustworthy")
    import openvino

    return [ModelFile(onnx_file.role, onnx_file.fold, "openvino", "fp32", xml.name, sha256_of(xml), onnx_file.inputs,
                      onnx_file.outputs, {"openvino": openvino.get_version(), "from": onnx_file.path,
                                          "max_abs_prob_diff_vs_torch_fp32": diff},
                      ((weights.name, sha256_of(weights)),))]


def _with_bf16_gate(out: Path, spec: Spec, files: list[ModelFile], info: dict, studies: int) -> list[ModelFile]:
    """``files`` with each IR's bf16 gate (``bf16_gate``) in its extra; a summary in ``info``."""
    if not any(f.format == "openvino" for f in files) or studies < 1:
        return files
    from .bf16_gate import bf16_gate, check_studies as gate_studies

    gates = bf16_gate(out, gate_studies(studies, AGREEMENT_SEED))
    for role, gate in gates.items():
        log.info("bf16 gate of %s: %s (%s)", role, "passed" if gate["passed"] else "failed", gate["reason"])
    info["bf16_gate"] = {role: {k: v for k, v in gate.items() if k != "studies"} for role, gate in gates.items()}
    files = [dataclasses.replace(f, extra={**f.extra, "bf16_gate": gates[f.role]}) if f.format == "openvino" else f
             for f in files]
    write_manifest(out, spec, files, info)
    return files


def _program(model, role: str, fold: int, stem: str, spec: Spec, out: Path, batches) -> ModelFile:
    """Export one network as a torch.export program, checked against the module."""
    inputs, outputs = _tensor_info(role, spec)
    pt2 = export_pt2(model, role, spec, out / f"{stem}.pt2")
    diff = max_module_difference(model, load_pt2(pt2), batches)
    if diff > PARITY_LIMIT:
        raise ExportError(f"{pt2}: the exported program differs from PyTorch by {diff:.2e} in probability")
    return ModelFile(role, fold, "pt2", "fp32", pt2.name, sha256_of(pt2), inputs, outputs,
                     {"torch": torch.__version__, "max_abs_prob_diff_vs_torch_fp32": diff})


def _info(weights_dirs: list[Path]) -> dict:
    return {"exporter": "l2s-export", "torch": torch.__version__, "python": platform.python_version(),
            "weights": [str(w) for w in weights_dirs]}


def export_programs(weights_dirs: list[Path], spec: Spec, out: Path, onnx_fp32: bool = False,
                    gate_studies: int = 0) -> Path:
    """Only the torch.export programs (and, with ``onnx_fp32``, the fp32 ONNX graphs and their
    OpenVINO IR where openvino is installed) and the manifest: ``l2s-export --programs-only``,
    for GPU hosts without the ONNX toolchain, and the benchmarks (no fp16 graphs, no agreement
    run; the bf16 gate on ``gate_studies`` studies). Built beside ``out`` and swapped in whole,
    as ``export_all``."""
    check_weight_files(weights_dirs, spec)
    with staged_engine_dir(out) as work:
        files = []
        for fold, wdir in enumerate(weights_dirs):
            for role, build in BUILDERS.items():
                model = load_weights(build(getattr(spec, role)), wdir, role).eval()
                stem = role if len(weights_dirs) == 1 else f"{role}_fold{fold}"
                batches = parity_batches(role, spec)
                if onnx_fp32:
                    files.append(_onnx_fp32(model, role, fold, stem, spec, work, batches))
                    files += _openvino_ir(model, files[-1], work, batches)
                files.append(_program(model, role, fold, stem, spec, work, batches))
        info = {**_info(weights_dirs), "programs_only": not onnx_fp32}
        write_manifest(work, spec, files, info)
        _with_bf16_gate(work, spec, files, info, gate_studies)
    return out


def fp16_agreement(out: Path, studies: int) -> dict:
    """Dice between the masks of the runtime pipeline (``l2s_engine.pipeline.HostEngine``, ONNX
    Runtime on the CPU) with the fp16 and with the fp32 graphs on phantom studies, and the
    largest difference of the 3D probabilities."""
    engines = {p: HostEngine(out, InferOptions(precision=p)) for p in ("fp32", "fp16")}
    results = []
    with engines["fp32"], engines["fp16"]:
        for index in range(studies):
            phantom = make_phantom(2 * index, seed=AGREEMENT_SEED, size="small")  # even index: with lesions
            runs = {p: e.segment(phantom.pet, phantom.ct, phantom.geometry) for p, e in engines.items()}
            results.append(_agreement_row(phantom.case_id, runs, engines["fp32"].fusion.low_threshold))
    return {"studies": results, "size": "small", "backend": "onnxruntime-cpu"}


def _agreement_row(case_id: str, runs: dict, low_threshold: float) -> dict:
    from l2s_engine.metrics import case_metrics  # cc3d: not needed by --programs-only (GPU hosts)

    masks = {p: r.mask for p, r in runs.items()}
    probs = {p: r.p3d for p, r in runs.items()}
    row = {"case_id": case_id, "max_abs_p3d_diff": float(np.abs(probs["fp16"] - probs["fp32"]).max())}
    # the fused masks, and the 3D masks at the low threshold (more voxels near the threshold)
    low = {k: v > low_threshold for k, v in probs.items()}
    for name, pair in (("mask", masks), ("p3d_low_mask", low)):
        agree = case_metrics(pair["fp16"], pair["fp32"], 1.0, case_id)
        both_empty = agree.gt_voxels == 0 and agree.pred_voxels == 0
        row.update({f"{name}_dice": 1.0 if both_empty else agree.dice,
                    f"{name}_voxels_fp32": agree.gt_voxels, f"{name}_voxels_fp16": agree.pred_voxels})
    log.info("fp16 vs fp32 on %s: mask Dice %.4f (%d voxels), p3d>%.2g Dice %.4f (%d voxels), max |dp3d| %.2e",
             case_id, row["mask_dice"], row["mask_voxels_fp32"], low_threshold,
             row["p3d_low_mask_dice"], row["p3d_low_mask_voxels_fp32"], row["max_abs_p3d_diff"])
    return row


def write_manifest(out: Path, spec: Spec, files: list[ModelFile], info: dict) -> Path:
    path = out / MANIFEST
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(json.dumps(manifest_dict(spec, files, info), indent=2) + "\n")
    os.replace(tmp, path)
    return path
