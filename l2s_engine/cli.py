"""Console entry points: l2s-infer (segmentation), l2s-phantoms (synthetic studies), l2s-eval (metrics)."""

from __future__ import annotations

import argparse
import csv
import io
import logging
import math
import sys
from pathlib import Path

from tqdm import tqdm

from .errors import L2SError

log = logging.getLogger("l2s_engine")


# Libraries that narrate their work at INFO (highdicom: every module it copies into a SEG).
_CHATTY = ("highdicom", "pydicom")


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    for name in _CHATTY:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.WARNING)


def phantoms_main(argv: list[str] | None = None) -> int:
    """l2s-phantoms OUT [-n N] [--size tiny|small|full] [--seed S] [--variety standard|wide] [--layout ...] [--mip]."""
    from .phantoms import SIZES, VARIETIES, make_phantom
    from .phantoms.files import LAYOUTS, write_study

    parser = argparse.ArgumentParser(
        prog="l2s-phantoms",
        description="Write synthetic whole-body FDG-PET/CT studies (deterministic per seed; "
                    "studies with an even index+seed have lesions).")
    parser.add_argument("out", type=Path, help="output folder (created)")
    parser.add_argument("-n", "--count", type=int, default=8, help="number of studies (default 8)")
    parser.add_argument("--size", choices=sorted(SIZES), default="small",
                        help="tiny: tests; small: demo and CPU benchmarks; full: the autoPET grid "
                             "400x400x326 at 2.04x2.04x3 mm (default small)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the set (default 0)")
    parser.add_argument("--start", type=int, default=0, help="index of the first study (default 0)")
    parser.add_argument("--variety", choices=VARIETIES, default="standard",
                        help="standard: the grid of --size, one scanner and habitus (default; what the tests and the "
                             "demo pin). wide: for training, each study draws its spacing (2-5 mm; tiny: 8-16 mm) "
                             "with the grid fitted to the body, body size and pose (arms up or down), organ uptake "
                             "low to high, 1-12 lesions (half the studies: none) of 4-40 mm at 2-20 SUV over their background at 12 sites, "
                             "PET resolution and noise, CT noise and contrast")
    parser.add_argument("--layout", choices=LAYOUTS, default="autopet", help="folder layout (default autopet)")
    parser.add_argument("--mip", action="store_true", help="also write a coronal PET MIP (PNG) per study")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    if args.count < 1 or args.start < 0:
        parser.error("--count must be >= 1 and --start >= 0")

    positive = 0
    for index in tqdm(range(args.start, args.start + args.count), desc="phantoms", unit="study"):
        study = make_phantom(index, args.seed, args.size, args.variety)
        folder = write_study(study, args.out, args.layout)
        positive += bool(study.lesions)
        if args.mip:
            _write_mip(study, args.out / f"{study.case_id}_mip.png")
        log.debug("%s: %d lesion(s) -> %s", study.case_id, len(study.lesions), folder)
    variety = "" if args.variety == "standard" else f" {args.variety}"
    print(f"wrote {args.count}{variety} {args.size} studies ({positive} with lesions) to {args.out} ({args.layout} layout)")
    return 0


def _write_mip(study, path: Path) -> None:
    import numpy as np

    from .qc import coronal_view, overlay, to_gray, write_png

    gray = to_gray(coronal_view(study.pet, study.geometry), 0.0, 10.0, invert=True)
    lesions = coronal_view(study.seg, study.geometry) > 0
    write_png(path, np.concatenate([np.repeat(gray[..., None], 3, axis=2), overlay(gray, lesions)], axis=1))


def eval_main(argv: list[str] | None = None) -> int:
    """l2s-eval PRED GT [-o CSV]: autoPET metrics of predicted masks against ground truth."""
    parser = argparse.ArgumentParser(
        prog="l2s-eval",
        description="autoPET metrics (Dice, FPV, FNV in mL; 18-connected components) of masks in "
                    "PRED (named <case_id>.nii.gz or .mha, as l2s-infer writes them) against the "
                    "labels of the studies found below GT.")
    parser.add_argument("pred", type=Path, help="folder of predicted masks")
    parser.add_argument("gt", type=Path, nargs="+", help="study folder(s) with labels (SEG.* / labelsTr)")
    parser.add_argument("-o", "--csv", type=Path, help="per-case CSV to write (default: PRED/metrics.csv)")
    parser.add_argument("--pet-channel", default="0000", help="nnU-Net PET channel (default 0000)")
    parser.add_argument("--ct-channel", default="0001", help="nnU-Net CT channel (default 0001)")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    return _guarded("l2s-eval", _evaluate, args)


def report_main(argv: list[str] | None = None) -> int:
    """l2s-report OUT: merge the parts of a split cohort (if any) and write OUT/report.html."""
    parser = argparse.ArgumentParser(
        prog="l2s-report",
        description="Write OUT/report.html (one self-contained page: run facts, QC thumbnails, per-study readout, "
                    "metrics, flags, stage times) from OUT/report.json. Where OUT holds the reports of a cohort run "
                    "in parts (l2s-infer --num-parts N --part-id K), first merge them into report.json and "
                    "lesions.csv; exit status 1 when a part is missing or unfinished (each is named).")
    parser.add_argument("out", type=Path, help="output folder of an l2s-infer run (holds report.json or its parts)")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    return _guarded("l2s-report", _report, args)


def _report(args) -> int:
    from .report_html import write_html
    from .shards import find_parts

    problems = _merge_parts(args.out) if find_parts(args.out) else []
    print(write_html(args.out))
    for problem in problems:
        print(f"l2s-report: {problem}", file=sys.stderr)
    return 1 if problems else 0


def _merge_parts(out: Path) -> list[str]:
    """Write OUT/report.json and lesions.csv from the parts; returns what keeps the merge from being whole."""
    import datetime
    import json

    from .files import write_csv_atomic, write_text_atomic
    from .readout import LESION_CSV_FIELDS
    from .run_report import LESIONS, REPORT, StudyRecord, summary
    from .shards import merge

    merged = merge(out)
    report = merged.report
    report["summary"] = summary([StudyRecord.from_dict(s) for s in report["studies"]])
    finished = [p["finished"] for p in report["parts"].values()]
    report["finished"] = max(finished, key=datetime.datetime.fromisoformat) if all(finished) else None
    report.pop("wall_seconds", None)  # each part's own: in the part reports
    write_text_atomic(out / REPORT, json.dumps(report, indent=2, allow_nan=False) + "\n")
    write_csv_atomic(out / LESIONS, LESION_CSV_FIELDS, merged.lesions)
    print(f"merged {len(report['parts'])} part report(s): {len(report['studies'])} studies -> {out / REPORT}")
    return merged.problems


def _guarded(prog: str, run, args) -> int:
    """Run a command; an L2SError becomes one line on stderr and exit status 2."""
    try:
        return run(args)
    except L2SError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2


def _evaluate(args) -> int:
    from .io import find_studies, load_label
    from .io.images import split_image_name
    from .metrics import CONVENTIONS, aggregate, case_metrics

    if not args.pred.is_dir():
        print(f"l2s-eval: {args.pred}: not a folder of predicted masks", file=sys.stderr)
        return 2
    refs = [r for r in find_studies(args.gt, args.pet_channel, args.ct_channel) if r.seg is not None]
    if not refs:
        print(f"l2s-eval: no study with a label below {', '.join(map(str, args.gt))}", file=sys.stderr)
        return 2
    predictions = {}
    for path in sorted(args.pred.iterdir()):
        split = split_image_name(path.name)
        if split is not None and not path.name.startswith("."):
            predictions.setdefault(split[0], path)
    results, failed = [], []
    for ref in tqdm(refs, desc="eval", unit="case"):
        pred_path = predictions.get(ref.case_id)
        if pred_path is None:
            failed.append((ref.case_id, f"no prediction {ref.case_id}.nii.gz/.mha in {args.pred}"))
            continue
        try:
            gt, gt_grid = load_label(ref.seg)
            pred, pred_grid = load_label(pred_path)
            if not gt_grid.same_grid(pred_grid):
                raise L2SError(f"{pred_path}: not on the label's grid ({'; '.join(gt_grid.differences(pred_grid))})")
            results.append(case_metrics(pred, gt, gt_grid.voxel_volume_ml, ref.case_id))
        except L2SError as exc:
            failed.append((ref.case_id, str(exc)))
    for case_id, why in failed:
        print(f"FAILED {case_id}: {why}", file=sys.stderr)
    csv_path = args.csv or args.pred / "metrics.csv"
    _write_csv(csv_path, results)
    for convention in CONVENTIONS:
        agg = aggregate(results, convention)
        print(f"{convention:>13}: Dice {_fmt(agg['dice'])}  FPV {_fmt(agg['fpv_ml'])} mL  "
              f"FNV {_fmt(agg['fnv_ml'])} mL  ({agg['cases']} cases, {agg['positive_cases']} with lesions)")
    print(f"per-case metrics: {csv_path}" + (f"; {len(failed)} case(s) failed" if failed else ""))
    return 1 if failed else 0


def _fmt(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:.4f}"


def _write_csv(path: Path, results) -> None:
    from .files import write_text_atomic

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["case_id", "gt_voxels", "pred_voxels", "dice", "fpv_ml", "fnv_ml"])
    for r in results:
        writer.writerow([r.case_id, r.gt_voxels, r.pred_voxels, _csv_num(r.dice), _csv_num(r.fpv_ml), _csv_num(r.fnv_ml)])
    write_text_atomic(path, buffer.getvalue())


def _csv_num(x: float) -> str:
    return "nan" if math.isnan(x) else repr(round(x, 6))


GC_OUTPUT_SUBDIR = Path("images") / "automated-petct-lesion-segmentation"


def infer_main(argv: list[str] | None = None) -> int:
    """l2s-infer --engine DIR INPUT... -o OUT: lesion masks for every study found below INPUT."""
    from .backends import BACKENDS
    from .core import PRECISIONS
    from .postprocess import RULES
    from .resources import BYTES_PER_VOXEL, default_max_voxels
    from .scheduler import FORMATS

    parser = argparse.ArgumentParser(
        prog="l2s-infer",
        description="Segment FDG-PET/CT lesions with an engine directory made by l2s-export. Finds the "
                    "studies below each INPUT (autoPET, grand-challenge or nnU-Net layout, or DICOM PT + CT series, "
                    "converted to SUV body weight by the QIBA rules), writes one mask per study on its PET grid "
                    "(DICOM studies: also a DICOM SEG), and report.json (timings, memory, metrics where a study "
                    "has a label). Exit status 1 when any study failed.")
    parser.add_argument("inputs", type=Path, nargs="*", help="study folders or folders of studies")
    parser.add_argument("--engine", type=Path, required=True, help="engine directory (output of l2s-export)")
    parser.add_argument("-o", "--out", type=Path, default=Path("predictions"), help="output folder (default predictions/)")
    parser.add_argument("--backend", choices=[*sorted(BACKENDS), "auto"], default="auto",
                        help="inference backend (default auto: tensorrt, else torch on a GPU; on the CPU openvino where "
                             "installed and the engine directory has its IR, else onnxruntime; the choice is printed). "
                             "openvino and onnxruntime run on the CPU, torch the .pt2 programs, tensorrt the fp16 plans")
    parser.add_argument("--device", help="cpu or cuda[:N] (default cpu; tensorrt: cuda). cuda runs the GPU pipeline "
                                         "(two CUDA streams, CuPy kernels)")
    parser.add_argument("--precision", type=_precision_arg, metavar="|".join(PRECISIONS),
                        help="fp32 or fp16: which exported graphs run (fp16: tensorrt, torch on a GPU); openvino: fp32, "
                             "bf16, or auto (default for openvino: bf16 per network where the CPU has bf16 units and the "
                             "network passed the export's bf16 fidelity gate, else fp32); one per network as "
                             "loc2d=fp32,seg3d=bf16. Default: fp32 (onnxruntime), fp16 (tensorrt, auto on a GPU)")
    parser.add_argument("--cache-dir", type=Path,
                        help="where openvino keeps compiled models, per OpenVINO version and CPU (default "
                             "$L2S_CACHE_DIR, else ~/.cache/l2s-engine)")
    parser.add_argument("--threads", type=int, help="backend CPU threads (default: one per core)")
    parser.add_argument("--low-memory", action="store_true",
                        help="free each network's working memory after its stage (openvino keeps both networks' "
                             "buffers: paper networks in fp32 peaked at 4.3 GB, and at 3.0 GB with this flag, about "
                             "6%% slower)")
    parser.add_argument("--batch-2d", type=int, default=16, help="coronal slices per network call (default 16)")
    parser.add_argument("--batch-3d", type=int, default=2, help="3D windows per network call (default 2)")
    parser.add_argument("--tta", action="store_true", help="flip test-time augmentation (2x 2D work: left-right, the only flip the 2D net is trained with; 8x 3D; off by default)")
    parser.add_argument("--no-skip-air", action="store_true",
                        help="also run the networks on coronal slices and windows without any body voxel")
    parser.add_argument("--full-cue", action="store_true",
                        help="run the 2D net on every body slice (default: on the CPU pipeline with the paper rule, "
                             "only on slices where the cue can change the mask, after the 3D net; same mask). "
                             "Implied by --save-probs, so that the saved cue is whole")
    parser.add_argument("--rule", choices=RULES,
                        help="fusion: paper (adaptive threshold) or components (authors' public code); default: the "
                             "engine's (its manifest's fusion.rule: paper)")
    parser.add_argument("--cue-threshold", type=float, help="override the manifest's cue threshold (0.5)")
    parser.add_argument("--low-threshold", type=float, help="override the threshold where the cue is set (0.1)")
    parser.add_argument("--high-threshold", type=float, help="override the threshold elsewhere (0.5)")
    parser.add_argument("--format", choices=sorted(FORMATS), default="nii.gz",
                        help="mask file format (default nii.gz); DICOM studies also get a DICOM SEG <case>_seg.dcm "
                             "referencing their PT series; dicom-seg: the SEG alone (DICOM studies only)")
    parser.add_argument("--save-probs", action="store_true", help="also write the 3D probabilities and the cue (float32)")
    parser.add_argument("--qc", action="store_true", help="also write a coronal PET MIP with the mask overlaid (PNG)")
    parser.add_argument("--overwrite", action="store_true",
                        help="redo every study (by default a study is skipped only when its provenance record shows "
                             "its outputs were made from the same input files with the same engine and options)")
    parser.add_argument("--max-voxels", type=int, default=default_max_voxels(),
                        help="refuse a PET (or label) whose header declares more voxels, or a CT with 8 times more, before "
                             f"reading them (default {default_max_voxels():,}: this machine's memory / "
                             f"{BYTES_PER_VOXEL} bytes)")
    parser.add_argument("--pet-channel", default="0000", help="nnU-Net PET channel (default 0000)")
    parser.add_argument("--ct-channel", default="0001", help="nnU-Net CT channel (default 0001)")
    parser.add_argument("--pet-series", metavar="NUMBER|UID",
                        help="DICOM: the PT series to use (SeriesNumber or SeriesInstanceUID) where a study has "
                             "several (default: the one that is attenuation- and decay-corrected)")
    parser.add_argument("--ct-series", metavar="NUMBER|UID",
                        help="DICOM: the CT series to use where several share the PT's frame of reference")
    parser.add_argument("--num-parts", type=int, metavar="N",
                        help="split the cohort into N parts (with --part-id): this process runs every N-th study of "
                             "the list sorted by case id and writes report.part-K-of-N.json; run the N parts anywhere "
                             "on one shared output folder, then l2s-report OUT merges them")
    parser.add_argument("--part-id", type=int, metavar="K", help="which part this process runs, 0 to N-1")
    parser.add_argument("--ray", metavar="ADDRESS",
                        help="run the studies on a Ray cluster: `local` starts one on this machine, `auto` joins the "
                             "cluster this machine belongs to, or the head's host:port; one worker per GPU (--device "
                             "cuda) or per --threads CPU cores (default 1), each holding the engine open; inputs and "
                             "outputs on a folder every node sees (needs l2s-engine[ray])")
    parser.add_argument("--ray-workers", type=int, metavar="N",
                        help="Ray workers to start (default: as many as the cluster's GPUs or CPUs allow)")
    parser.add_argument("--grand-challenge", action="store_true",
                        help="read GC_INPUT/images/{pet,ct}, write GC_OUTPUT/images/automated-petct-lesion-segmentation/<uuid>.mha")
    parser.add_argument("--gc-input", type=Path, default=Path("/input"), help="grand-challenge input (default /input)")
    parser.add_argument("--gc-output", type=Path, default=Path("/output"), help="grand-challenge output (default /output)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    if args.grand_challenge == bool(args.inputs):
        parser.error("give INPUT folders, or --grand-challenge (which reads --gc-input), not both")
    if (args.num_parts is None) != (args.part_id is None):
        parser.error("--num-parts and --part-id go together: --num-parts N --part-id K, 0 <= K < N")
    if args.num_parts is not None:
        from .shards import ShardError, check_part

        try:
            check_part(args.num_parts, args.part_id)
        except ShardError as exc:
            parser.error(str(exc))
        if args.grand_challenge:
            parser.error("--grand-challenge runs one container's input: it takes no --num-parts")
    return _guarded("l2s-infer", _infer, args)


def _precision_arg(text: str) -> str:
    from .precision import PrecisionError, parse_precision

    try:
        parse_precision(text)
    except PrecisionError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    return text


def _resolve(args, manifest):
    """The run (``core.resolve_run``) of the command line; says what ``--backend auto`` chose and
    every choice the run made for the user."""
    from .core import InferOptions, resolve_run

    options = InferOptions(backend=args.backend, device=args.device, precision=args.precision, threads=args.threads,
                           batch_2d=args.batch_2d, batch_3d=args.batch_3d, tta=args.tta,
                           skip_air=not args.no_skip_air, full_cue=args.full_cue or args.save_probs, rule=args.rule,
                           cue_threshold=args.cue_threshold, low_threshold=args.low_threshold,
                           high_threshold=args.high_threshold, cache_dir=args.cache_dir,
                           low_memory=args.low_memory)
    run = resolve_run(options, manifest, keep_maps=args.save_probs)
    if run.chosen_by is not None:
        chosen = run.options
        print(f"backend auto: {chosen.backend} on {chosen.device}" + (f" (passed over: {run.chosen_by})"
              if chosen.backend != "tensorrt" else f" ({run.chosen_by})"))
    for note in run.notes:
        print(f"note: {note}")
    return run


def _precision_words(info: dict) -> str:
    """'fp32', or per network what ran and the CPU's bf16 unit, with the compile time (openvino)."""
    nets = info.get("networks", {})
    if not any("why" in n for runs in nets.values() for n in runs):
        return info["precision"]
    ran = ", ".join(f"{role} {'/'.join(sorted({n['precision'] for n in runs}))}" for role, runs in nets.items())
    compile_s = sum(n.get("compile_seconds") or 0.0 for runs in nets.values() for n in runs)
    loaded = all(str(n.get("cache", "")).startswith("loaded") for runs in nets.values() for n in runs)
    return (f"{ran}; CPU bf16: {info.get('cpu_bf16', '?')}; models {'loaded from the cache' if loaded else 'compiled'}"
            f" in {compile_s:.1f} s")


def _gpu_words(info: dict) -> str:
    return f", GPU pipeline on {info['gpu']}, kernels: {info['kernels']}" if "gpu" in info else ""


def _banner(info: dict, engine_dir: Path, words: str) -> str:
    return (f"backend: {info['name']} {info['version'] or ''} ({_precision_words(info)}, {info['folds']} fold(s), "
            f"{info['preset']} preset, fusion {info['rule']}{_gpu_words(info)}) from {engine_dir}; {words}")


def _run_on_ray(args, run, refs, outputs, words):
    """(records, the engine's stand-in for the report) of a run on a Ray cluster."""
    import dataclasses

    from .cluster import Placement, connect, run_on_ray
    from .core import cuda_index

    cpus = args.threads or 1
    ray = connect(args.ray)
    try:
        placement = Placement(args.ray_workers, cpus=cpus, gpus=0 if cuda_index(run.options.device) is None else 1)
        run = dataclasses.replace(run, options=dataclasses.replace(run.options, threads=cpus))
        return run_on_ray(ray, args.engine, run, refs, outputs, placement, progress=not args.quiet,
                          on_start=lambda info: print(_banner(info, args.engine, words)))
    finally:
        ray.shutdown()


def _now() -> str:
    """This moment in ISO 8601 with the local UTC offset (what report.json's dates say)."""
    import datetime

    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def _infer(args) -> int:
    import time

    from .io import find_studies
    from .io.dicom_select import SeriesChoice
    from .executors import open_engine
    from .errors import OutputError
    from .manifest import read_manifest
    from .files import ensure_writable_dir
    from .report_html import write_html
    from .run_report import LESIONS, REPORT, StudyRecord, summary, write_lesions, write_report
    from .scheduler import OutputOptions, run_studies
    from .shards import cohort_key, part_names, part_of

    # a bad engine directory is reported before any input is scanned; the manifest is read once
    manifest = read_manifest(args.engine)
    run = _resolve(args, manifest)
    if args.grand_challenge:
        inputs, out_dir, fmt = [args.gc_input], args.gc_output / GC_OUTPUT_SUBDIR, "mha"
        report_path, lesions_path = args.gc_output / "l2s_report.json", args.gc_output / "l2s_lesions.csv"
    else:
        inputs, out_dir, fmt = args.inputs, args.out, args.format
        report_path, lesions_path = args.out / REPORT, args.out / LESIONS
        if args.num_parts is not None:
            report_path, lesions_path = (args.out / name for name in part_names(args.num_parts, args.part_id))
    records_dir = args.gc_output / "l2s_provenance" if args.grand_challenge else None
    outputs = OutputOptions(out_dir, fmt, args.save_probs, args.qc, args.overwrite, records_dir, args.max_voxels)
    start, started = time.perf_counter(), _now()
    engine = None if args.ray else open_engine(manifest, run)  # a Ray worker opens its own
    hidden: list[Path] = []
    refs = find_studies(inputs, args.pet_channel, args.ct_channel, hidden,
                        SeriesChoice(args.pet_series, args.ct_series))
    if not refs:
        print(f"l2s-infer: no study found below {', '.join(map(str, inputs))}", file=sys.stderr)
        return 2
    ensure_writable_dir(report_path.parent)  # the output folders: in run_studies, before any study
    extra = {"inputs": [str(p) for p in inputs], "hidden_folders_not_searched": [str(p) for p in hidden],
             "started": started}
    words = f"{len(refs)} stud{'y' if len(refs) == 1 else 'ies'} -> {out_dir}" + (
        f"; {len(hidden)} hidden folder(s) not searched (named above)" if hidden else "")
    if args.num_parts is not None:
        extra["part"] = {"id": args.part_id, "of": args.num_parts, "cohort": cohort_key(refs)}
        refs = part_of(refs, args.num_parts, args.part_id)
        words += f"; part {args.part_id} of {args.num_parts}: {len(refs)} of them"

    def publish(engine_like, records) -> Path | None:
        """report.json, lesions.csv and report.html; None when they cannot be written (said on stderr)."""
        try:
            write_report(report_path, engine_like, records, {**extra, "finished": _now(),
                                                             "wall_seconds": round(time.perf_counter() - start, 3)})
            write_lesions(lesions_path, records)
            if not args.grand_challenge and "part" not in extra:  # parts: the page comes from l2s-report's merge
                write_html(report_path.parent)
        except OutputError as exc:
            print(f"l2s-infer: no report: {exc}", file=sys.stderr)
            return None
        return report_path

    if args.ray:
        records, stand_in = _run_on_ray(args, run, refs, outputs, words)
        written = publish(stand_in, records)
    else:
        with engine:
            print(_banner(engine.describe(), args.engine, words))
            if "part" in extra:  # written now, so that l2s-report can tell a started (or killed) part from a missing one
                write_report(report_path, engine, [StudyRecord(r.case_id, source=str(r.folder)) for r in refs],
                             {**extra, "finished": None})
            records = run_studies(engine, refs, outputs, progress=not args.quiet, shared="part" in extra)
            written = publish(engine, records)
    totals = summary(records)
    for r in records:
        if r.status == "failed":
            print(f"FAILED {r.case_id}: {r.error}", file=sys.stderr)
    times = "  ".join(f"{k} {v:.2f}s" for k, v in totals["mean_seconds"].items())
    print(f"{totals['ok']} segmented, {totals['skipped']} skipped (done earlier), {totals['failed']} failed "
          f"in {time.perf_counter() - start:.1f} s; peak memory {totals['peak_rss_mb']:.0f} MiB")
    if times:
        print(f"mean per study: {times}")
    for convention, agg in totals.get("metrics", {}).items():
        print(f"{convention:>13}: Dice {_fmt(agg['dice'])}  FPV {_fmt(agg['fpv_ml'])} mL  FNV {_fmt(agg['fnv_ml'])} mL "
              f"({agg['cases']} labelled, {agg['positive_cases']} with lesions)")
    if written is None:
        return 1
    print(f"report: {written}")
    return 1 if totals["failed"] else 0
