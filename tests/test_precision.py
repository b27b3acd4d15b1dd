"""--precision parsing, the per-network choice (pure), and the CPU facts it rests on."""

import pytest

from l2s_engine.cpuinfo import bf16_isa, parse_cpuinfo, reported_flags
from l2s_engine.core import InferOptions
from l2s_engine.precision import PrecisionError, choose, parse_precision

CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse2 avx2 fma avx512f avx512_bf16 amx_bf16 amx_tile amx_int8
processor\t: 1
model name\t: something else
"""


def test_cpuinfo_first_processor_model_and_flags():
    model, flags = parse_cpuinfo(CPUINFO)
    assert model == "Intel(R) Xeon(R) Platinum 8480+"
    assert {"avx2", "amx_bf16", "avx512_bf16"} <= flags
    assert reported_flags(flags) == ["avx2", "fma", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8"]
    assert parse_cpuinfo("") == ("", frozenset())


@pytest.mark.parametrize("flags, isa", [({"avx2", "avx512_bf16", "amx_bf16"}, "AMX-BF16"),
                                        ({"avx512f", "avx512_bf16"}, "AVX512-BF16"),
                                        ({"avx2", "avx512f"}, "none"), (set(), "none")])
def test_bf16_unit_from_flags(flags, isa):
    assert bf16_isa(flags) == isa


def test_parse_one_name_or_one_per_network():
    assert parse_precision("auto") == {"loc2d": "auto", "seg3d": "auto"}
    assert parse_precision("2d=fp32, 3d=bf16") == {"loc2d": "fp32", "seg3d": "bf16"}
    assert parse_precision("seg3d=bf16,loc2d=auto") == {"loc2d": "auto", "seg3d": "bf16"}
    for bad in ("fp8", "loc2d=bf16", "loc2d=bf16,loc2d=fp32", "loc2d=bf16,seg2d=fp32", "loc2d=int8,seg3d=fp32", ""):
        with pytest.raises(PrecisionError, match="--precision"):
            parse_precision(bad)


PASSED = {"measured": True, "passed": True, "min_dice": 0.998, "reason": "ok"}


@pytest.mark.parametrize("requested, isa, gate, ran, words", [
    ("fp32", "AMX-BF16", PASSED, "fp32", "asked for"),
    ("auto", "AMX-BF16", PASSED, "bf16", "gate passed"),
    ("auto", "AVX512-BF16", PASSED, "bf16", "AVX512-BF16"),
    ("auto", "none", PASSED, "fp32", "no bf16 units"),
    ("auto", "AMX-BF16", None, "fp32", "records no bf16 fidelity gate"),
    ("auto", "AMX-BF16", {"measured": False, "passed": False, "reason": "not measured: no bf16"}, "fp32", "not measured"),
    ("auto", "AMX-BF16", {"measured": True, "passed": False, "reason": "mask Dice 0.9"}, "fp32", "gate failed"),
    ("bf16", "AVX512-BF16", {"measured": True, "passed": False, "reason": "mask Dice 0.9"}, "bf16", "although"),
])
def test_choice_per_network(requested, isa, gate, ran, words):
    choice = choose(requested, isa, gate)
    assert choice.precision == ran and words in choice.reason


def test_bf16_without_units_and_fp16_on_the_cpu_are_refused():
    with pytest.raises(PrecisionError, match="no bf16 units"):
        choose("bf16", "none", PASSED)
    with pytest.raises(PrecisionError, match="GPU"):
        choose("fp16", "AMX-BF16", PASSED)


@pytest.mark.parametrize("backend, precision", [("onnxruntime", "bf16"), ("onnxruntime", "auto"),
                                                ("torch", "loc2d=fp32,seg3d=fp16"), ("openvino", "fp16")])
def test_options_refuse_a_precision_the_backend_does_not_run(backend, precision):
    with pytest.raises(PrecisionError):
        InferOptions(backend=backend, precision=precision)
