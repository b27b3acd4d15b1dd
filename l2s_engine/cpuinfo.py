"""What this CPU is and which reduced-precision units it has (for reports and the bf16 choice).

Read from ``/proc/cpuinfo`` (Linux); elsewhere the model is ``platform.processor()`` and no
bf16 unit is assumed, so nothing runs in bf16 on a guess.
"""

from __future__ import annotations

import functools
import hashlib
import platform
import re
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
# The bf16 matrix units, fastest first: Intel AMX tiles, then AVX-512 BF16 dot products
# (Intel Cooper Lake and later, AMD Zen 4 and later).
BF16_ISAS = (("amx_bf16", "AMX-BF16"), ("avx512_bf16", "AVX512-BF16"))
NO_BF16 = "none"
# flags worth naming beside a benchmark figure
REPORTED_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16",
                  "amx_int8", "amx_fp16")


def parse_cpuinfo(text: str) -> tuple[str, frozenset[str]]:
    """(model name, flags) of the first processor in a ``/proc/cpuinfo`` text (pure)."""
    model = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    flags = re.search(r"^flags\s*:\s*(.*)$", text, re.M)
    return (model.group(1).strip() if model else "", frozenset(flags.group(1).split() if flags else ()))


@functools.lru_cache(maxsize=1)
def this_cpu() -> tuple[str, frozenset[str]]:
    """(model name, flags) of this machine's CPU."""
    try:
        model, flags = parse_cpuinfo(CPUINFO.read_text())
    except OSError:
        model, flags = "", frozenset()
    return model or platform.processor() or platform.machine() or "unknown CPU", flags


def bf16_isa(flags: frozenset[str] | set[str]) -> str:
    """The best bf16 unit among ``flags``: "AMX-BF16", "AVX512-BF16" or "none" (pure)."""
    return next((name for flag, name in BF16_ISAS if flag in flags), NO_BF16)


def reported_flags(flags: frozenset[str] | set[str]) -> list[str]:
    """The SIMD and matrix flags among ``flags`` that matter for these networks' speed."""
    return [f for f in REPORTED_FLAGS if f in flags]


def cpu_key() -> str:
    """A short file-name-safe name of this CPU kind: model and flags (compiled code depends on both)."""
    model, flags = this_cpu()
    slug = re.sub(r"[^A-Za-z0-9]+", "-", model).strip("-")[:40] or "cpu"
    return f"{slug}-{hashlib.sha256(' '.join(sorted(flags)).encode()).hexdigest()[:8]}"
