"""The bf16 fidelity gate: may a network run in bf16 (openvino, ``--precision auto``)?

Per network, the whole pipeline runs with that network in bf16 and the other in fp32, beside
the all-fp32 pipeline, on the export's check studies. The network passes where every study's
fused mask is within Dice ``GATE_DICE`` of the fp32 mask, and at least one fp32 mask holds a
lesion (an all-empty check set proves nothing). Measured only on a CPU with bf16 units: where
the exporting CPU has none, the gate says so and ``auto`` keeps fp32 everywhere.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from l2s_engine.cpuinfo import this_cpu
from l2s_engine.metrics import mask_dice as dice
from l2s_engine.phantoms import make_phantom
from l2s_engine.core import InferOptions
from l2s_engine.pipeline import HostEngine
from l2s_engine.precision import GATE_DICE

log = logging.getLogger("l2s_export")
MAPS = {"loc2d": "cue", "seg3d": "p3d"}  # the map each network makes


def bf16_gate(engine_dir: Path, studies: list) -> dict[str, dict]:
    """The gate of each network (role -> record for the manifest), on ``studies`` (phantoms)."""
    from l2s_engine.backends.openvino import machine_bf16, version

    isa, cpu = machine_bf16(), this_cpu()[0]
    facts = {"isa": isa, "cpu": cpu, "openvino": version(), "dice_limit": GATE_DICE}
    if isa == "none":
        why = f"not measured: the exporting CPU ({cpu}) has no bf16 units; export on a CPU with AVX512-BF16 or AMX"
        return {role: {**facts, "measured": False, "passed": False, "reason": why} for role in MAPS}
    configs = {"fp32": "fp32", "loc2d": "loc2d=bf16,seg3d=fp32", "seg3d": "loc2d=fp32,seg3d=bf16"}
    engines = {k: HostEngine(engine_dir, InferOptions(backend="openvino", precision=p, full_cue=True))
               for k, p in configs.items()}
    rows: dict[str, list] = {role: [] for role in MAPS}
    for engine in engines.values():
        engine.__enter__()
    try:
        for study in studies:
            runs = {k: e.segment(study.pet, study.ct, study.geometry) for k, e in engines.items()}
            ref = runs["fp32"]
            for role, name in MAPS.items():
                got = runs[role]
                rows[role].append({"case_id": study.case_id, "dice": dice(got.mask > 0, ref.mask > 0),
                                   "voxels_fp32": int(ref.mask.sum()), "voxels_bf16": int(got.mask.sum()),
                                   "max_abs_prob_diff": float(np.abs(getattr(got, name) - getattr(ref, name)).max())})
    finally:
        for engine in engines.values():
            engine.__exit__(None, None, None)
    return {role: _verdict(facts, rows[role]) for role in MAPS}


def _verdict(facts: dict, rows: list[dict]) -> dict:
    min_dice = min(r["dice"] for r in rows)
    largest = max(r["max_abs_prob_diff"] for r in rows)
    informative = sum(r["voxels_fp32"] > 0 for r in rows)
    if not informative:
        passed, reason = False, f"no check study had a lesion in its fp32 mask ({len(rows)} studies): nothing compared"
    elif min_dice < GATE_DICE:
        worst = min(rows, key=lambda r: r["dice"])
        passed, reason = False, f"mask Dice {min_dice:.4f} < {GATE_DICE} on {worst['case_id']}"
    else:
        passed, reason = True, f"mask Dice >= {min_dice:.4f} on {len(rows)} studies ({informative} with a non-empty fp32 mask)"
    return {**facts, "measured": True, "passed": passed, "reason": reason, "min_dice": min_dice,
            "max_abs_prob_diff": largest, "studies": rows}


def check_studies(count: int, seed: int) -> list:
    """The bf16 gate's phantom studies: the first ``2 * count``, so ``count`` with lesions (even
    indices) and ``count`` without. The lesion-free ones hold a trained net's false positives,
    whose edge voxels bf16 flips too: the demo weights' 3D net passed on three studies with
    lesions and then changed 2 of the 33 false-positive voxels of a lesion-free one in bf16."""
    return [make_phantom(index, seed=seed, size="small") for index in range(2 * count)]
