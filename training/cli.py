"""l2s-train: train the two L2SNet networks into a weights directory, and evaluate them."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch

from l2s_engine.errors import L2SError
from l2s_engine.io import find_studies
from l2s_engine.metrics import aggregate, case_metrics
from l2s_engine.postprocess import fuse_paper
from l2s_engine.spec import Spec, SpecError, parse_spacing, preset

from .data.folds import split
from .data.studies import labelled_refs, load_training_studies, median_spacing
from .loop import AMP_CHOICES, LoopConfig, resolve_amp
from .models import Loc2DNet, Seg3DNet, load_imagenet_encoder
from .predict import predict_cue, predict_volume
from .fit import compute_cues, train_loc2d, train_seg3d
from .weights import load_weights, read_config, save_weights, write_config

log = logging.getLogger("l2s_training")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="l2s-train", description=__doc__)
    parser.add_argument("task", choices=("2d", "3d", "all", "eval"),
                        help="2d: the localisation net; 3d: the segmentation net (needs 2d weights in "
                             "--out); all: both; eval: metrics of --out's nets on the held-out fold")
    parser.add_argument("--data", type=Path, nargs="+", required=True, help="folder(s) of labelled studies")
    parser.add_argument("--out", type=Path, default=Path("weights"), help="weights directory (default weights/)")
    parser.add_argument("--preset", default="lite", help="lite (CPU minutes) or paper (default lite)")
    parser.add_argument("--fold", type=int, default=0, help="held-out fold 0-4, or -1: train on all data / evaluate all data (default 0)")
    parser.add_argument("--epochs", type=int, help="epochs of each network (default: the preset's)")
    parser.add_argument("--iters", type=int, help="batches per epoch (default: the preset's)")
    parser.add_argument("--lr", type=float, help="base learning rate of both networks (default: the preset's)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--amp", default="auto", choices=AMP_CHOICES,
                        help="mixed precision: auto = fp16 on CUDA, bf16 on a CPU with native bfloat16 "
                             "(AVX512-BF16/AMX), else off (default auto)")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--imagenet", type=Path, help="local timm res2net50_26w_4s ImageNet weights for the 2D encoder")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--spacing", default="median", type=_spacing_choice, metavar="median|preset|Z,Y,X",
                        help="the network spacing studies are resampled to (mm, numpy order z,y,x): the median "
                             "PET spacing of the training studies (default, as nnU-Net), the preset's (paper: "
                             "autoPET's 3.0,2.0364,2.0364), or given; a 3d run keeps its 2d net's")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("l2s-train: --device cuda but torch sees no CUDA GPU; use --device cpu", file=sys.stderr)
        return 2
    try:
        if args.task == "eval":
            return _evaluate(args)
        return _train(args)
    except (L2SError, FileNotFoundError, ValueError) as exc:
        print(f"l2s-train: {exc}", file=sys.stderr)
        return 2


def _spacing_choice(text: str):
    """--spacing: "median", "preset" or Z,Y,X millimetres."""
    if text in ("median", "preset"):
        return text
    try:
        return parse_spacing(text)
    except SpecError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _network_spacing(args, spec: Spec, train_ids: list[str]) -> tuple[tuple[float, float, float], str]:
    """(spacing z, y, x mm, where it came from) for a new weights directory."""
    if args.spacing == "preset":
        return spec.spacing_zyx_mm, f"the {spec.preset} preset"
    if args.spacing == "median":
        refs = labelled_refs(args.data, set(train_ids))
        return median_spacing(refs), f"median PET spacing of {len(refs)} training studies"
    return tuple(args.spacing), "--spacing"


def _spec_for(args) -> tuple[Spec, dict]:
    """The preset, or the spec already in --out (a 3d run must match its 2d net, spacing included)."""
    spec = preset(args.preset)
    provenance: dict = {}
    if (args.out / "config.json").exists():
        existing, provenance = read_config(args.out)
        if existing.loc2d != spec.loc2d or existing.seg3d != spec.seg3d:
            raise ValueError(f"{args.out} holds a {existing.preset!r} model; use --preset {existing.preset} "
                             "or another --out")
        if isinstance(args.spacing, tuple) and not np.allclose(args.spacing, existing.spacing_zyx_mm, rtol=1e-6):
            raise ValueError(f"{args.out} holds networks trained at spacing {existing.spacing_zyx_mm} (z, y, x mm); "
                             f"--spacing {args.spacing} would not match them; use another --out")
        spec = existing
    overrides = {}
    if args.epochs:
        overrides.update(epochs_2d=args.epochs, epochs_3d=args.epochs)
    if args.iters:
        overrides.update(iters_2d=args.iters, iters_3d=args.iters)
    if args.lr:
        overrides.update(lr=args.lr)
    if overrides:
        spec = dataclasses.replace(spec, train=dataclasses.replace(spec.train, **overrides))
    return spec, provenance


def _case_split(args) -> tuple[list[str], list[str]]:
    ids = [r.case_id for r in find_studies(args.data) if r.seg is not None]
    return split(ids, args.fold)


def _train(args) -> int:
    spec, provenance = _spec_for(args)
    train_ids, held_out = _case_split(args)
    log.info("fold %d: %d training studies, %d held out", args.fold, len(train_ids), len(held_out))
    if not provenance:  # a new weights directory: its networks are trained at this spacing
        spacing, source = _network_spacing(args, spec, train_ids)
        spec = dataclasses.replace(spec, spacing_zyx_mm=spacing)
        provenance["spacing"] = source
    log.info("network spacing %s mm (z, y, x; %s)", spec.spacing_zyx_mm, provenance.get("spacing", "config.json"))
    studies = load_training_studies(args.data, spec, set(train_ids))
    t = spec.train
    amp = resolve_amp(args.amp, args.device)
    log.info("mixed precision: %s", amp)
    common = dict(momentum=t.momentum, weight_decay=t.weight_decay, out_dir=args.out, device=args.device,
                  seed=args.seed, amp=amp)
    record = dict(data=[str(p) for p in args.data], fold=args.fold, seed=args.seed, train_cases=len(studies),
                  held_out_cases=len(held_out), device=args.device, amp=amp, torch=torch.__version__)
    torch.manual_seed(args.seed)
    loc = Loc2DNet(spec.loc2d)
    if args.task in ("2d", "all"):
        if args.imagenet:
            missing = load_imagenet_encoder(loc, args.imagenet)
            log.info("ImageNet encoder weights from %s (%d keys missing)", args.imagenet, len(missing))
        cfg = LoopConfig("loc2d", t.epochs_2d, t.iters_2d, t.lr, **common)
        start = time.perf_counter()
        fit = train_loc2d(loc, studies, spec, cfg, args.resume)
        save_weights(loc, args.out, "loc2d")
        provenance["loc2d"] = dict(record, epochs=t.epochs_2d, iters=t.iters_2d, batch=t.batch_2d,
                                   seconds=round(time.perf_counter() - start, 1), **fit.record(),
                                   imagenet=str(args.imagenet) if args.imagenet else None)
        write_config(args.out, spec, provenance)
    if args.task in ("3d", "all"):
        load_weights(loc, args.out, "loc2d")
        start = time.perf_counter()
        compute_cues(loc.to(args.device), studies, spec, args.device)
        log.info("cues of %d studies in %.1f s", len(studies), time.perf_counter() - start)
        torch.manual_seed(args.seed + 1)
        seg = Seg3DNet(spec.seg3d)
        cfg = LoopConfig("seg3d", t.epochs_3d, t.iters_3d, t.lr, **common)
        start = time.perf_counter()
        resume = args.resume and (args.task == "3d" or (args.out / "checkpoints" / "seg3d.pt").exists())
        fit = train_seg3d(seg, studies, spec, cfg, resume)
        save_weights(seg, args.out, "seg3d")
        provenance["seg3d"] = dict(record, epochs=t.epochs_3d, iters=t.iters_3d, batch=t.batch_3d,
                                   seconds=round(time.perf_counter() - start, 1), **fit.record())
        write_config(args.out, spec, provenance)
    print(f"weights: {args.out} ({spec.preset} preset)")
    return 0


def _evaluate(args) -> int:
    spec, _ = read_config(args.out)
    train_ids, held_out = _case_split(args)
    if args.fold == -1:  # an independent test set: every study in --data
        held_out = train_ids
    studies = load_training_studies(args.data, spec, set(held_out), keep_native=True)
    loc = load_weights(Loc2DNet(spec.loc2d), args.out, "loc2d").to(args.device)
    seg = load_weights(Seg3DNet(spec.seg3d), args.out, "seg3d").to(args.device)
    results: dict[str, list] = {"2d (cue > 0.5)": [], "3d (p > 0.5)": [], "fused (paper rule)": []}
    start = time.perf_counter()
    for s in studies:
        cue = predict_cue(loc, s.pet_2d, s.geometry, spec.loc2d, args.device)
        p3d = predict_volume(seg, s.pet_3d, s.ct_3d, spec.seg3d, spec.fusion.step_fraction, args.device)
        # scored on the native grid, as deployed: the maps come back before the thresholds
        cue, p3d = s.grid.to_native(cue), s.grid.to_native(p3d)
        vv = s.grid.native.voxel_volume_ml
        for name, mask in (("2d (cue > 0.5)", cue > 0.5), ("3d (p > 0.5)", p3d > 0.5),
                           ("fused (paper rule)", fuse_paper(p3d, cue, spec.fusion))):
            results[name].append(case_metrics(mask, s.native_seg, vv, s.case_id))
    summary = {}
    for name, cases in results.items():
        agg = aggregate(cases, "positive-only")
        summary[name] = agg
        print(f"{name:>20}: Dice {agg['dice']:.4f}  FPV {agg['fpv_ml']:.3f} mL  FNV {agg['fnv_ml']:.3f} mL "
              f"(positive-only; {agg['positive_cases']} of {agg['cases']} held-out studies have lesions)")
    per_case = {name: [dataclasses.asdict(c) for c in cases] for name, cases in results.items()}
    (args.out / f"eval_fold{args.fold}.json").write_text(json.dumps(
        {"summary": summary, "cases": per_case, "seconds": round(time.perf_counter() - start, 1)},
        indent=2, default=lambda x: None if isinstance(x, float) and np.isnan(x) else x) + "\n")
    return 0
