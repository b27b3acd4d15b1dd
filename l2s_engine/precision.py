"""Which precision each network runs in: the ``--precision`` value and, for ``auto``, the CPU's
bf16 units and the export's bf16 fidelity gate (pure functions; no backend imported).

``--precision`` is one name for both networks (``fp32``, ``fp16``, ``bf16``, ``auto``) or one
per network, ``loc2d=fp32,seg3d=bf16`` (``2d``/``3d`` also accepted).
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import L2SError

NAMES = ("fp32", "fp16", "bf16", "auto")
ROLES = {"loc2d": "loc2d", "2d": "loc2d", "seg3d": "seg3d", "3d": "seg3d"}
GATE_DICE = 0.995  # masks of a bf16 network vs fp32, per check study, for auto to choose bf16


class PrecisionError(L2SError):
    """A --precision value that is malformed, or that this machine or backend cannot run."""


def parse_precision(text: str) -> dict[str, str]:
    """``{"loc2d": ..., "seg3d": ...}`` from a --precision value.

    Raises:
        PrecisionError: an unknown name or network, or a network given twice or not at all.
    """
    text = str(text).strip()
    if "=" not in text:
        if text not in NAMES:
            raise PrecisionError(f"--precision {text!r}: choose {', '.join(NAMES)}, or one per network as "
                                 "loc2d=fp32,seg3d=bf16")
        return {"loc2d": text, "seg3d": text}
    chosen: dict[str, str] = {}
    for part in text.split(","):
        key, _, value = (s.strip() for s in part.partition("="))
        role = ROLES.get(key.lower())
        if role is None or value not in NAMES or role in chosen:
            raise PrecisionError(f"--precision {text!r}: {part.strip()!r} is not NETWORK=PRECISION with NETWORK "
                                 f"loc2d or seg3d (once each) and PRECISION one of {', '.join(NAMES)}")
        chosen[role] = value
    if set(chosen) != {"loc2d", "seg3d"}:
        raise PrecisionError(f"--precision {text!r}: name both networks (loc2d=...,seg3d=...)")
    return chosen


@dataclass(frozen=True)
class Choice:
    """The precision one network runs in, and why (for the report and the banner)."""

    precision: str
    reason: str


def choose(requested: str, isa: str, gate: dict | None) -> Choice:
    """The precision of one network on the CPU (the openvino backend).

    Args:
        requested: "fp32", "bf16" or "auto" (fp16 is the GPU's and raises).
        isa: the CPU's bf16 unit (``cpuinfo.bf16_isa``): "AMX-BF16", "AVX512-BF16" or "none".
        gate: the network's bf16 fidelity gate from the manifest (``passed``, ``min_dice``,
            ``reason``), or None where the export did not measure one.

    Raises:
        PrecisionError: bf16 asked for on a CPU without bf16 units, or fp16.
    """
    if requested == "fp32":
        return Choice("fp32", "asked for (--precision fp32)")
    if requested == "fp16":
        raise PrecisionError("fp16 is the GPU's precision (tensorrt, torch on cuda); on the CPU use --precision "
                             "fp32, bf16 or auto")
    if requested == "bf16":
        if isa == "none":
            raise PrecisionError("--precision bf16: this CPU has no bf16 units (neither AMX-BF16 nor AVX512-BF16), "
                                 "and emulated bf16 is slower and less accurate than fp32; use --precision fp32 or auto")
        passed = "" if gate is None else (" (its bf16 gate passed)" if gate.get("passed")
                                           else f" although its bf16 gate failed: {gate.get('reason', '?')}")
        return Choice("bf16", f"asked for (--precision bf16) on {isa}{passed}")
    if requested != "auto":
        raise PrecisionError(f"unknown precision {requested!r}; choose fp32, bf16 or auto")
    if isa == "none":
        return Choice("fp32", "auto: this CPU has no bf16 units (ISA none)")
    if gate is None:
        return Choice("fp32", "auto: the engine directory records no bf16 fidelity gate for this network; "
                              "re-export it with l2s-export on a CPU with bf16 units")
    if not gate.get("measured", True):
        return Choice("fp32", f"auto: the bf16 fidelity gate was {gate.get('reason', 'not measured')}")
    if not gate.get("passed"):
        return Choice("fp32", f"auto: the bf16 fidelity gate failed at export ({gate.get('reason', '?')})")
    return Choice("bf16", f"auto: {isa} and the bf16 fidelity gate passed at export "
                          f"(min mask Dice {gate.get('min_dice', float('nan')):.4f} >= {GATE_DICE})")
