"""The ready GPU check: the `gpu` tests, then a short benchmark of the GPU pipeline, one table.

    python benchmarks/gpu_check.py [--out DIR] [--small N] [--full N]

Needs only numpy, torch (CUDA), CuPy and cuda-python: no SimpleITK, no cc3d, no file I/O
for the studies (phantoms are generated as arrays), no install of this project (the script
puts the repository on the import path). Within ten minutes on an H100:

1. ``pytest -m gpu tests/device``: every kernel against its numpy twin, the torch fp16
   two-stream pipeline against the CPU pipeline (Dice >= 0.995 per phantom), device memory
   flat over ten studies;
2. the demo weights exported as torch programs on this host, then per study on ``small``
   and ``full`` phantoms: the GPU pipeline's per-stage device times (CUDA events), the
   device time end to end, the overlap of the two streams (stage times minus device time),
   and host wall time; beside it the host pipeline with the same fp16 networks on the same
   GPU (a round trip to the host per batch) as the baseline.

Writes ``gpu-<card>-<date>.json`` and ``.md`` to ``--out`` (default ``benchmarks/results``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from hostprep import ensure_installed, import_path  # noqa: E402


def run_gpu_tests() -> dict:
    missing = ensure_installed("pytest")
    if missing:
        print(f"gpu tests NOT run: {missing}")
        return {"exit_status": 1, "summary": f"not run: {missing}"}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", "tests/device"],
                          cwd=ROOT, capture_output=True, text=True)
    tail = (proc.stdout + proc.stderr).strip().splitlines()
    print("\n".join(tail[-25:]))
    return {"exit_status": proc.returncode, "summary": tail[-1] if tail else "", "seconds": round(time.perf_counter() - start, 1)}


def study_rows(engine, phantoms, label: str) -> list[dict]:
    rows = []
    warm = phantoms[0]
    engine.segment(warm.pet, warm.ct, warm.geometry)  # warm-up: kernels, allocator, cuDNN autotuning
    for p in phantoms:
        start = time.perf_counter()
        result = engine.segment(p.pet, p.ct, p.geometry)
        wall = time.perf_counter() - start
        rows.append({"pipeline": label, "case_id": p.case_id, "shape": list(p.pet.shape), "wall_s": wall,
                     "mask_voxels": int(result.mask.sum()), **{f"{k}_s": v for k, v in result.timings.items()},
                     **result.work})
    return rows


def benchmark(small: int, full: int) -> tuple[list[dict], dict]:
    import cupy
    import torch

    from l2s_engine.cuda.engine import DeviceEngine
    from l2s_engine.phantoms import make_phantom
    from l2s_engine.core import InferOptions
    from l2s_engine.pipeline import HostEngine
    from l2s_export.checks import check_weights_dirs
    from l2s_export.pipeline import export_programs

    demo = ROOT / "weights" / "demo"
    programs = export_programs([demo], check_weights_dirs([demo]), Path(tempfile.mkdtemp(prefix="l2s-programs-")))
    options = InferOptions(backend="torch", device="cuda", precision="fp16")
    sets = {"small": [make_phantom(i, seed=1000, size="small") for i in range(small)],
            "full": [make_phantom(i, seed=1000, size="full") for i in range(full)]}
    rows = []
    with DeviceEngine(programs, options) as gpu, HostEngine(programs, options) as host:
        info = {"kernels": gpu.kernels.source, "gpu": gpu.device.name}
        for size, phantoms in sets.items():
            if not phantoms:
                continue
            rows += [dict(r, size=size) for r in study_rows(gpu, phantoms, "gpu pipeline (torch fp16 + CuPy)")]
            rows += [dict(r, size=size) for r in study_rows(host, phantoms, "host stages + torch fp16 on GPU")]
        info["device_memory_mib"] = round((cupy.get_default_memory_pool().total_bytes()
                                           + torch.cuda.max_memory_allocated()) / 2**20, 1)
    return rows, info


STAGES = ("preprocess", "resample", "2d", "3d", "fusion", "device", "overlap")  # full phantoms: resampled to the demo weights' spacing


def table(rows: list[dict]) -> str:
    lines = ["| size | pipeline | studies | " + " | ".join(f"{s} s" for s in STAGES) + " | wall s (p50) | ratio |",
             "|---|---|---|" + "---|" * len(STAGES) + "---|---|"]
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["size"], r["pipeline"]), []).append(r)
    base = {size: statistics.median(x["wall_s"] for x in g) for (size, name), g in groups.items() if name.startswith("host")}
    for (size, name), g in groups.items():
        cells = []
        for s in STAGES:
            values = [x[f"{s}_s"] for x in g if f"{s}_s" in x]
            cells.append(f"{statistics.mean(values):.4f}" if values else "-")
        wall = statistics.median(x["wall_s"] for x in g)
        ratio = f"{base[size] / wall:.2f}x" if size in base and not name.startswith("host") else ""
        lines.append(f"| {size} | {name} | {len(g)} | " + " | ".join(cells) + f" | {wall:.4f} | {ratio} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--small", type=int, default=4, help="small phantoms to time (default 4)")
    parser.add_argument("--full", type=int, default=2, help="full-size phantoms to time (default 2)")
    parser.add_argument("--skip-tests", action="store_true")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    import_path()
    try:
        import cupy
        import torch

        if cupy.cuda.runtime.getDeviceCount() < 1 or not torch.cuda.is_available():
            raise RuntimeError("CuPy or torch sees no CUDA GPU")
    except Exception as exc:  # noqa: BLE001 - whatever is missing, say so and stop
        print(f"gpu_check: needs a CUDA GPU with CuPy and a CUDA build of torch ({type(exc).__name__}: {exc})",
              file=sys.stderr)
        return 2
    card = cupy.cuda.runtime.getDeviceProperties(0)["name"]
    card = card.decode() if isinstance(card, bytes) else str(card)
    print(f"GPU: {card}; torch {torch.__version__}, CuPy {cupy.__version__}, Python {platform.python_version()}")
    tests = {"skipped": True} if args.skip_tests else run_gpu_tests()
    rows, info = benchmark(args.small, args.full)
    md = table(rows)
    print(md)
    stamp = datetime.date.today().isoformat()
    slug = "".join(c if c.isalnum() else "-" for c in card).strip("-").lower()
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"card": card, "date": stamp, "torch": torch.__version__, "cupy": cupy.__version__, "tests": tests,
              **info, "studies": rows, "seconds": round(time.perf_counter() - start, 1)}
    (args.out / f"gpu-{slug}-{stamp}.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / f"gpu-{slug}-{stamp}.md").write_text(
        f"# GPU check: {card}, {stamp}\n\ntorch {torch.__version__}, CuPy {cupy.__version__}; kernels: "
        f"{info['kernels']}; gpu tests: {tests.get('summary', 'skipped')}\n\nTimes per study (mean over studies; "
        "device stage times from CUDA events; overlap = 2d + 3d + fusion - device):\n\n" + md + "\n")
    print(f"written to {args.out} in {time.perf_counter() - start:.0f} s")
    return 0 if tests.get("exit_status", 0) == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
