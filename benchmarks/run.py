"""Latency report: our pipelines and the peers, side by side on the same studies and weights.

    python benchmarks/run.py [--preset paper|lite] [--size small|full] [--scans N]
        [--backends onnxruntime,torch,tensorrt] [--peers monai,nnunet-style] [--out DIR] [--quick]
        [--in-memory]

Phantom studies are generated as files (autoPET layout) under ``--work``; the weights are the
committed demo weights (``lite``) or, for ``paper``, the paper-size networks with seeded random
weights whose output layers are shifted so that about 2% of 2D pixels and 1% of 3D voxels
come out positive (random networks give no masks otherwise, and the mask check would be
empty). Each pipeline runs in its own process (so its peak memory is its own), after a
warm-up on the first study, one study at a time: read, preprocess, 2D, 3D, fusion, write; ours
also pipelined (reader and writer threads, ``l2s_engine.scheduler``). ``--in-memory``: the
studies are generated as arrays (pickled once, loaded untimed), nothing is read or written as
images, so neither SimpleITK nor cc3d is needed (a GPU host may have neither); read, write and
the pipelined run are then not measured. Every pipeline's masks
are compared with ours (Dice >= 0.995, else the comparison is void and says so). FLOPs of the
slices and windows each pipeline actually ran are counted from the networks; the machine's
matmul peak is measured in the same run in each precision a pipeline ran (float32; bfloat16
where ``ours-openvino`` may run it), and each network stage is set against the peak of the
precision it ran in.

Writes ``<device>-<date>.json``, ``.md`` and ``.png`` into ``--out`` (default
``benchmarks/results``). ``--quick``: lite, tiny, 2 studies (CI checks the report's fields).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from hostprep import ensure_installed, import_path  # noqa: E402
from report import STAGES  # noqa: E402
from studies import SEED, make_studies, study_loaders  # noqa: E402

DEMO = ROOT / "weights" / "demo"
PAPER_SEED = 0
VOID_DICE = 0.995
ALL_SLICES = "all-slices"  # our pipeline with air skipping off: the mask check's reference


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", choices=("paper", "lite"), default="paper")
    p.add_argument("--size", choices=("tiny", "small", "full"), default="small")
    p.add_argument("--scans", type=int, default=3, help="studies to time (default 3)")
    p.add_argument("--backends", default="onnxruntime",
                   help="our backends, comma-separated (default onnxruntime); openvino runs --precision auto, "
                        "openvino-bf16 / openvino-fp32 force that precision")
    p.add_argument("--peers", default="monai,nnunet-style", help="peer pipelines, comma-separated ('' for none)")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="CPU threads of every pipeline (default: all)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]: where ours (torch fp16 + CuPy GPU pipeline; "
                                                   "tensorrt) and the peers (torch fp32) run (default cpu)")
    p.add_argument("--out", type=Path, default=HERE / "results", help="report folder (default benchmarks/results)")
    p.add_argument("--work", type=Path, default=ROOT / "data" / "bench", help="studies, weights, engines (default data/bench)")
    p.add_argument("--quick", action="store_true", help="lite, tiny, 2 studies: checks that the benchmark runs")
    p.add_argument("--in-memory", action="store_true",
                   help="studies as arrays, no image files: needs neither SimpleITK nor cc3d; read, write and the "
                        "pipelined run are not measured")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--engine", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--weights", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--studies", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.preset, args.size, args.scans = "lite", "tiny", 2
    args.backends = [b for b in args.backends.split(",") if b]
    args.peers = [b for b in args.peers.split(",") if b]
    return args


# ---- preparation (parent process) --------------------------------------------------------------

def calibrate(net, body, positive: float) -> None:
    """Make a random network's output input-driven and sparse, in place: BatchNorm statistics
    taken from ``body`` (random BatchNorm layers otherwise shrink the signal to nothing), then
    the output bias shifted so the top ``positive`` share of logits on ``body`` is above 0."""
    import torch

    norms = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if norms:
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # a plain average over the calibration batch
        net.train()
        with torch.no_grad():
            net(body)
        for m in norms:
            m.momentum = 0.1
    net.eval()
    with torch.inference_mode():
        logits = net(body).flatten()
        net.head.bias -= torch.quantile(logits[:: max(1, logits.numel() // 1_000_000)], 1.0 - positive)


def paper_weights(work: Path, sample) -> Path:
    """Paper-size networks with seeded random weights, calibrated on ``sample`` (``calibrate``:
    ~2% of 2D pixels and ~1% of 3D voxels positive), recorded at the sample's spacing: random
    networks were trained nowhere, and at the studies' own spacing nothing is resampled (the
    paper preset's autoPET spacing would resample `small` studies to 8x the voxels)."""
    import dataclasses

    import torch

    from l2s_engine.preprocess import slices_to_input, to_coronal, intensity_window
    from l2s_engine.resample import spacing_zyx
    from l2s_engine.spec import preset
    from l2s_engine.tiling import pad_amounts
    from l2s_training.models import Loc2DNet, Seg3DNet
    from l2s_training.weights import save_weights, write_config

    spacing = tuple(round(v, 4) for v in spacing_zyx(sample.geometry))
    out = work / f"weights-paper-{PAPER_SEED}-{'x'.join(f'{v:g}' for v in spacing)}mm"
    if (out / "config.json").exists():
        return out
    spec = dataclasses.replace(preset("paper"), spacing_zyx_mm=spacing)
    torch.manual_seed(PAPER_SEED)
    loc, seg = Loc2DNet(spec.loc2d).eval(), Seg3DNet(spec.seg3d).eval()
    pet2 = to_coronal(intensity_window(sample.pet, *spec.loc2d.suv_window), sample.geometry)
    middle = pet2.shape[0] // 2
    slices = slices_to_input(pet2, np.arange(middle - 12, middle + 12, 3), spec.loc2d.resize, spec.loc2d.crop,
                             spec.loc2d.in_slices)
    volume = np.stack([intensity_window(sample.pet, *spec.seg3d.suv_window), intensity_window(sample.ct, *spec.seg3d.ct_window)])
    patch = spec.seg3d.patch
    volume = np.pad(volume, [(0, 0), *pad_amounts(volume.shape[1:], patch)], constant_values=-1.0)
    starts = [(n - p) // 2 for n, p in zip(volume.shape[1:], patch)]
    window3d = volume[(slice(None), *(slice(s, s + p) for s, p in zip(starts, patch)))][None]
    for net, x, share in ((loc, slices, 0.02), (seg, window3d, 0.01)):
        calibrate(net, torch.from_numpy(np.ascontiguousarray(x)), share)
    save_weights(loc, out, "loc2d")
    save_weights(seg, out, "seg3d")
    write_config(out, spec, {"benchmark": f"random weights, seed {PAPER_SEED}, BatchNorm statistics and output "
                                          "biases calibrated on one phantom: ~2% / ~1% positive"})
    return out


def engine_dir(work: Path, weights: Path, preset_name: str, gate_studies: int = 0) -> Path:
    """fp32 ONNX graphs, their OpenVINO IR (with the bf16 gate on ``gate_studies`` studies) and
    torch programs of ``weights`` (parity-checked), exported once."""
    from l2s_export.checks import check_weights_dirs
    from l2s_export.pipeline import export_programs

    from l2s_engine.manifest import sha256_of

    out = work / f"engine-{preset_name}-{weights.name}"
    stamp = out / "weights.sha256"  # the weights it was exported from: retrained weights re-export
    current = "\n".join([*(f"{sha256_of(f)} {f.name}" for f in sorted(weights.glob("*.safetensors"))),
                         f"bf16 gate studies {gate_studies}"])
    if not stamp.exists() or stamp.read_text() != current:  # written only after a whole export
        shutil.rmtree(out, ignore_errors=True)
        export_programs([weights], check_weights_dirs([weights]), out, onnx_fp32=True, gate_studies=gate_studies)
        stamp.write_text(current)
    return out


# ---- one pipeline (worker process) -------------------------------------------------------------

def make_pipeline(name: str, engine: Path, weights: Path, threads: int, device: str = "cpu"):
    """A ``segment(pet, ct, geometry) -> (mask, timings, work)`` callable, our HostEngine or None, and
    the spec (whose network spacing the studies are resampled to)."""
    if name.startswith("ours-"):
        from l2s_engine.executors import open_engine
        from l2s_engine.core import InferOptions

        backend, _, variant = name[5:].partition("-")
        gpu = device.startswith("cuda") and backend != "onnxruntime"
        reference = variant == ALL_SLICES  # every slice and window, the whole cue
        # openvino: bf16 per network where the CPU has it and the export's gate passed ("auto");
        # "openvino-bf16" forces bf16 whatever the gate said (its speed, and its mask check)
        forced = variant if variant in ("fp32", "bf16") else None
        precision = "fp16" if gpu else forced or ("auto" if backend == "openvino" else "fp32")
        options = InferOptions(backend=backend, threads=threads, skip_air=not reference, full_cue=reference,
                               device=device if gpu else None, precision=precision)
        engine_obj = open_engine(engine, options, keep_maps=False)
        engine_obj.__enter__()

        def segment(pet, ct, geometry):
            r = engine_obj.segment(pet, ct, geometry)
            return r.mask, r.timings, r.work

        return segment, engine_obj, engine_obj.spec
    import torch

    from l2s_training.models import Loc2DNet, Seg3DNet
    from l2s_training.weights import load_weights, read_config
    from peers import PEERS

    torch.set_num_threads(threads)
    spec, _ = read_config(weights)
    loc = load_weights(Loc2DNet(spec.loc2d), weights, "loc2d")
    seg = load_weights(Seg3DNet(spec.seg3d), weights, "seg3d")
    return PEERS[name](loc, seg, spec, device=device).segment, None, spec


def worker(args) -> int:
    from l2s_engine.resources import peak_rss_mb

    files = not args.in_memory
    if files:
        from l2s_engine.io import write_mask
    loaders = study_loaders(args.studies, args.in_memory)
    from l2s_engine.resample import grid_map

    segment, engine, spec = make_pipeline(args.worker, args.engine, args.weights, args.threads, args.device)
    masks = args.result.with_suffix("")
    masks.mkdir(parents=True, exist_ok=True)
    first = loaders[0]()
    segment(first.pet, first.ct, first.geometry)  # warm-up
    del first
    rows = []
    for load in loaders:
        t0 = time.perf_counter()
        study = load()  # in memory: unpickling arrays, not timed as reading
        t1 = time.perf_counter()
        mask, timings, work = segment(study.pet, study.ct, study.geometry)
        t2 = time.perf_counter()
        if files:
            write_mask(mask, study.geometry, masks / f"{study.case_id}.nii.gz")
        t3 = time.perf_counter()
        np.save(masks / f"{study.case_id}.npy", mask)  # for the mask check, not timed
        stages = {k: v for k, v in timings.items() if k in STAGES}
        if files:
            stages.update(read=t1 - t0, write=t3 - t2)
        rows.append({"case_id": study.case_id, "shape": list(study.pet.shape), "seconds": stages,
                     "segment": t2 - t1, "end_to_end": t3 - t0 if files else t2 - t1, "work": work,
                     "mask_voxels": int(mask.sum()),
                     "spacing": grid_map(study.geometry, spec.spacing_zyx_mm).describe(stages.get("resample", 0.0))})
        del study
    result = {"pipeline": args.worker, "studies": rows}
    if files and engine is not None and not args.worker.endswith(ALL_SLICES):  # ours: also reader and writer threads
        from l2s_engine.io import find_studies
        from l2s_engine.scheduler import OutputOptions, run_studies

        refs = find_studies([args.studies])
        start = time.perf_counter()
        records = run_studies(engine, refs, OutputOptions(masks / "pipelined", overwrite=True), progress=False)
        result["pipelined_seconds"] = time.perf_counter() - start
        result["pipelined_failed"] = sum(r.status != "ok" for r in records)
    if engine is not None:
        result["backend"] = engine.describe()
        engine.__exit__(None, None, None)
    result["peak_rss_mb"] = peak_rss_mb()
    result["peak_device_mb"] = peak_device_mb() if args.device.startswith("cuda") else None
    args.result.write_text(json.dumps(result, indent=2))
    return 0


def peak_device_mb() -> float:
    """Peak GPU memory of this process: torch's allocator peak plus CuPy's pool (if used)."""
    import torch

    total = torch.cuda.max_memory_allocated()
    if "cupy" in sys.modules:
        total += sys.modules["cupy"].get_default_memory_pool().total_bytes()
    return total / 2**20


# ---- the run (parent process) ------------------------------------------------------------------

def run_worker(name: str, args, engine: Path, weights: Path, studies: Path, results: Path) -> dict:
    out = results / f"{name}.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", name, "--engine", str(engine),
           "--weights", str(weights), "--studies", str(studies), "--result", str(out), "--threads", str(args.threads),
           "--device", args.device] + (["--in-memory"] if args.in_memory else [])
    start = time.perf_counter()
    subprocess.run(cmd, check=True)
    print(f"  {name}: done in {time.perf_counter() - start:.1f} s", flush=True)
    return json.loads(out.read_text())


def add_body_slice_dice(runs: dict, reference: str, loaders: list, results: Path) -> None:
    """For our air-skipping pipelines: the Dice against the reference on the coronal slices that
    hold body, where both run the networks (elsewhere ours leaves the cue at 0 by design)."""
    from l2s_engine.planning import body_mask, occupied_slices
    from l2s_engine.preprocess import to_coronal

    keep = {}
    for load in loaders:
        study = load()
        body = to_coronal(body_mask(study.pet, study.ct), study.geometry)
        keep[study.case_id] = (occupied_slices(body), study.geometry)
    for name, run in runs.items():
        if not name.startswith("ours-") or name == reference:
            continue
        values = []
        for r in run["studies"]:
            index, geometry = keep[r["case_id"]]
            a, b = (to_coronal(np.load(results / n / f"{r['case_id']}.npy"), geometry)[index] for n in (name, reference))
            values.append(dice(a, b))
        run["dice_on_body_slices"] = values


def dice(a: np.ndarray, b: np.ndarray) -> float | None:
    """Dice of two masks, None when both are empty (no overlap to judge)."""
    from l2s_engine.metrics import mask_dice

    return mask_dice(a, b, empty=None)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import_path()  # a bare checkout (GPU host): the project's packages without installing them
    if args.worker:
        return worker(args)
    needed = (["torch"] if args.peers else []) + (["monai"] if "monai" in args.peers else [])
    for module in needed:
        missing = ensure_installed(module)
        if missing:
            print(f"benchmark: the peers need {module}: {missing}", file=sys.stderr)
            return 2
    if args.peers:
        from peers import PEERS

        unknown = sorted(set(args.peers) - set(PEERS))
        if unknown:
            print(f"benchmark: unknown peer(s) {', '.join(unknown)}; choose from {', '.join(PEERS)}", file=sys.stderr)
            return 2
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            print(f"benchmark: --device {args.device} needs a CUDA GPU that torch can use; torch "
                  f"{torch.__version__} sees none (use --device cpu)", file=sys.stderr)
            return 2
    from flops import matmul_peak
    from report import machine, summarise, write_report

    from l2s_engine.cpuinfo import bf16_isa, this_cpu

    start = time.perf_counter()
    args.work.mkdir(parents=True, exist_ok=True)
    print(f"benchmark: {args.preset} preset, {args.scans} {args.size} studies, ours {args.backends}, "
          f"peers {args.peers}, {args.threads} threads, device {args.device}", flush=True)
    studies = make_studies(args.work, args.size, args.scans, args.in_memory)
    if args.preset == "lite":
        weights = DEMO
    else:
        from l2s_engine.phantoms import make_phantom

        weights = paper_weights(args.work, make_phantom(0, seed=SEED, size=args.size))
    openvino = any(b.startswith("openvino") for b in args.backends)
    engine = engine_dir(args.work, weights, args.preset, gate_studies=1 if openvino else 0)
    peak = matmul_peak(device=args.device)
    peaks = {"fp16" if args.device.startswith("cuda") else "fp32": peak}
    if openvino and bf16_isa(this_cpu()[1]) != "none":  # the precision it may run
        peaks["bf16"] = matmul_peak(precision="bf16")
    for name, p in peaks.items():
        print(f"matmul peak {name}: {p['gflops']:.1f} GFLOP/s ({p['dtype']} {p['n']}^3 on {args.device})", flush=True)
    flops = item_flops(weights)
    # the reference of the mask check runs every slice and window, as the peers do: masks must
    # match it; ours (air skipped) may differ from it only on slices without any body
    pipelines = [f"ours-{args.backends[0]}-{ALL_SLICES}"] + [f"ours-{b}" for b in args.backends] + args.peers
    results_dir = Path(tempfile.mkdtemp(prefix="l2s-bench-", dir=args.work))
    runs = {name: run_worker(name, args, engine, weights, studies, results_dir) for name in pipelines}
    reference = pipelines[0]
    for name, run in runs.items():
        run["dice_vs_" + reference] = [dice(np.load(results_dir / name / f"{r['case_id']}.npy"),
                                            np.load(results_dir / reference / f"{r['case_id']}.npy"))
                                       for r in run["studies"]]
    add_body_slice_dice(runs, reference, study_loaders(studies, args.in_memory), results_dir)
    report = {"date": datetime.date.today().isoformat(), "machine": machine(), "args": {
        k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k not in
        ("worker", "engine", "weights", "studies", "result")}, "weights": str(weights), "engine": str(engine),
        "matmul_peak": peak, "matmul_peaks": peaks, "flops_per_item": flops, "reference": reference,
        "void_below_dice": VOID_DICE}
    report["pipelines"] = summarise(runs, flops, peaks, reference)
    report["seconds"] = round(time.perf_counter() - start, 1)
    paths = write_report(report, args.out)
    print(Path(paths["md"]).read_text())
    print("written:", ", ".join(str(p) for p in paths.values()))
    return 0


def item_flops(weights: Path) -> dict:
    """FLOPs of one 2D slice and one 3D window of the networks in ``weights``."""
    from flops import per_item_flops as count
    from l2s_export.onnx_graphs import input_shape
    from l2s_training.models import Loc2DNet, Seg3DNet
    from l2s_training.weights import read_config

    spec, _ = read_config(weights)
    return {"2d_per_slice": count(Loc2DNet(spec.loc2d), input_shape("loc2d", spec)),
            "3d_per_window": count(Seg3DNet(spec.seg3d), input_shape("seg3d", spec))}


if __name__ == "__main__":
    sys.exit(main())
