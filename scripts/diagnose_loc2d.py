#!/usr/bin/env python
"""Why the 2D localisation net does not learn (issue 20), and whether a fix does: evidence.

Reproducible (fixed seeds) diagnostics of the 2D net's training on phantom studies, written to
``--out`` (default data/diag/, git-ignored):

  data_stats.json        lesion slices, lesion-pixel share per lesion slice and per batch
                         (before / after augmentation), lesion component sizes
  batch_<k>.png          training batches: input with the label outlined, native coronal slice
                         vs network input (resize + crop) vs augmented (flip + rotation)
  alignment.json         mean input under the label as drawn vs under shifted / flipped labels:
                         if the labels are aligned, the drawn one sits on the hottest pixels
  gradient_balance.json  at initialisation: dL/dlogit summed over lesion vs background pixels,
                         per loss term; bf16 vs fp32 gradient agreement
  run_<loss>_<iters>.csv / .png  short instrumented runs (per iteration: BCE, Dice, gradient norms,
                         mean probability at lesion / background pixels, head bias) with the
                         loss as committed before the fix (``old``) and the training code's
                         current loss (``current``)
  runs.json              their first / last 10 % means and time
  cue_dice.json          the cue's own quality on held-out studies for each ``--weights`` dir:
                         Dice of cue > 0.5 against the labels of the coronal slices the net ran on
                         (the network grid), per study, plus false-positive voxels on
                         lesion-free studies

Example (phantoms as the demo's: `l2s-phantoms data/diag/train80 -n 80 --size small --seed 0`,
held-out `l2s-phantoms data/diag/test -n 20 --size small --seed 1000`):

    python scripts/diagnose_loc2d.py --train data/diag/train80 --test data/diag/test \
        --weights weights/demo data/diag/w_fixed --threads 1
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from l2s_engine.io import find_studies
from l2s_engine.spec import preset
from l2s_training.augment import flip_rotate
from l2s_training.data.folds import split
from l2s_training.data.slices import SliceSampler, slice_target
from l2s_training.data.studies import load_training_studies
from l2s_training.loop import poly_lr
from l2s_training.losses import loc_loss
from l2s_training.models import Loc2DNet
from l2s_training.models.seg3d import PRIOR_LOGIT
from l2s_training.predict import predict_cue
from l2s_training.weights import load_weights, read_config


def old_loc_loss(logits: torch.Tensor, target: torch.Tensor, dice_weight: float = 1.0) -> torch.Tensor:
    """L1 as committed before the fix: unweighted mean BCE + (1 - soft Dice pooled over the batch, smooth 1)."""
    logits, target = logits.float(), target.float()
    bce = F.binary_cross_entropy_with_logits(logits, target)
    p = torch.sigmoid(logits)
    dice = (2.0 * (p * target).sum() + 1.0) / (p.sum() + target.sum() + 1.0)
    return bce + dice_weight * (1.0 - dice)


LOSSES: dict = {"old": old_loc_loss}


def set_current_loss(sampler: SliceSampler) -> float:
    """LOSSES["current"]: the training code's L1 as train_loc2d calls it (with its BCE lesion
    weight, if the code has one). Returns that weight (1.0: none)."""
    try:
        from l2s_training.losses import lesion_pos_weight
        pos_weight = lesion_pos_weight(sampler.lesion_pixel_share())
    except (ImportError, AttributeError):
        pos_weight = 1.0
    LOSSES["current"] = (lambda logits, y, dice_weight=1.0: loc_loss(logits, y, dice_weight, pos_weight)) \
        if pos_weight != 1.0 else loc_loss
    return pos_weight


def terms(loss_fn, logits, y):
    """(BCE term, Dice term) of an additive BCE + lambda * Dice loss."""
    bce = loss_fn(logits, y, dice_weight=0.0)
    total = loss_fn(logits, y, dice_weight=1.0)
    return bce, total - bce


# ---------------------------------------------------------------------------- data

def data_stats(sampler: SliceSampler, spec, n_batches: int, seed: int) -> dict:
    from scipy import ndimage

    h, w = spec.loc2d.slice_shape
    per_slice = np.array([slice_target(sampler.seg_coronal[i], np.array([j]), spec.loc2d).mean()
                          for i, j in sampler.lesion_items])
    comps = []
    for s in sampler.studies:
        if s.positive:
            lab, n = ndimage.label(s.seg)
            comps += list(ndimage.sum(s.seg, lab, range(1, n + 1)))
    rng, gen = np.random.default_rng(seed), torch.Generator().manual_seed(seed)
    before, after, lesion_slices = [], [], []
    for _ in range(n_batches):
        picks = sampler.draw(rng)
        x, y = sampler.batch_arrays(picks)
        _, ya = flip_rotate(torch.from_numpy(x), torch.from_numpy(y), spec.train.rotation_deg, gen)
        before.append(float(y.mean()))
        after.append(float(ya.mean()))
        lesion_slices.append(sum(flag for *_, flag in picks))
    share = float(np.mean(after))
    return {
        "lesion_slices": len(sampler.lesion_items), "other_slices": len(sampler.other_items),
        "input_pixels_per_slice": h * w, "batch": sampler.batch, "lesion_fraction_2d": sampler.fraction,
        "lesion_share_per_lesion_slice": _summary(per_slice),
        "lesion_pixels_per_lesion_slice": _summary(per_slice * h * w),
        "lesion_voxels_per_component_3d": _summary(np.array(comps)),
        "lesion_share_per_batch_before_aug": _summary(np.array(before)),
        "lesion_share_per_batch_after_aug": _summary(np.array(after)),
        "lesion_pixels_kept_by_aug": float(np.sum(after) / max(np.sum(before), 1e-12)),
        "lesion_slices_per_batch_mean": float(np.mean(lesion_slices)),
        "background_to_lesion_pixel_ratio": (1 - share) / share,
        "sqrt_background_to_lesion_ratio": math.sqrt((1 - share) / share),
        "prior_probability_of_head": float(1 / (1 + math.exp(-PRIOR_LOGIT))),
    }


def _summary(a: np.ndarray) -> dict:
    return {"mean": float(a.mean()), "median": float(np.median(a)), "min": float(a.min()), "max": float(a.max()), "n": int(a.size)}


def alignment(sampler: SliceSampler, spec, n_batches: int, seed: int) -> dict:
    """Mean input (window units, -1 = SUV 0) under the drawn label and under deliberately
    misaligned versions of it, over augmented batches' lesion slices. Aligned labels mark the
    hot lesions: the drawn label must score highest."""
    rng, gen = np.random.default_rng(seed), torch.Generator().manual_seed(seed)
    variants = {"as drawn": lambda y: y, "shift +3 rows": lambda y: np.roll(y, 3, -2), "shift -3 rows": lambda y: np.roll(y, -3, -2),
                "shift +3 cols": lambda y: np.roll(y, 3, -1), "shift -3 cols": lambda y: np.roll(y, -3, -1),
                "flipped left-right": lambda y: y[..., ::-1], "flipped up-down": lambda y: y[..., ::-1, :],
                "transposed-resized (rows<->cols)": lambda y: np.swapaxes(y, -1, -2)}
    sums = {k: [] for k in variants}
    hot = []
    for _ in range(n_batches):
        x, y = sampler.batch_arrays(sampler.draw(rng))
        xa, ya = flip_rotate(torch.from_numpy(x), torch.from_numpy(y), spec.train.rotation_deg, gen)
        xa, ya = xa.numpy()[:, :1], ya.numpy()
        keep = ya.reshape(len(ya), -1).any(axis=1)
        if not keep.any():
            continue
        xa, ya = xa[keep], ya[keep]
        for k, f in variants.items():
            m = f(ya) > 0
            sums[k].append(xa[m])
        # share of label pixels that are hotter than the slice's 99th percentile
        for xi, yi in zip(xa, ya):
            hot.append(float((xi[yi > 0] > np.percentile(xi, 99)).mean()))
    out = {k: float(np.concatenate(v).mean()) if v else None for k, v in sums.items()}
    out["_share_of_label_pixels_above_slice_p99"] = float(np.mean(hot))
    return out


def save_batch_pngs(sampler: SliceSampler, spec, out: Path, n_batches: int, seed: int) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng, gen = np.random.default_rng(seed), torch.Generator().manual_seed(seed)
    paths = []
    for k in range(n_batches):
        picks = sampler.draw(rng)
        x, y = sampler.batch_arrays(picks)
        xa, ya = flip_rotate(torch.from_numpy(x), torch.from_numpy(y), spec.train.rotation_deg, gen)
        xa, ya = xa.numpy(), ya.numpy()
        order = sorted(range(len(picks)), key=lambda i: not picks[i][2])[:6]  # lesion slices first
        fig, axes = plt.subplots(3, len(order), figsize=(2.6 * len(order), 8.4), squeeze=False)
        for col, i in enumerate(order):
            study, j, flag = picks[i]
            native = sampler.coronal[study][j]
            seg = sampler.seg_coronal[study][j]
            rows = [(native, seg, f"native {native.shape}"), (x[i, 0], y[i, 0], f"input {x.shape[2:]}"),
                    (xa[i, 0], ya[i, 0], "augmented")]
            for row, (img, lab, title) in enumerate(rows):
                ax = axes[row][col]
                ax.imshow(img, cmap="gray_r", vmin=-1, vmax=-0.2, interpolation="nearest")
                if lab.any():
                    ax.contour(lab, levels=[0.5], colors="red", linewidths=0.8)
                ax.set_title(f"{title}\n{int(lab.sum())} lesion px" if row else
                             f"study {study} slice {j}{' L' if flag else ''}\n{title}", fontsize=7)
                ax.axis("off")
        fig.suptitle("coronal PET (dark = hot; SUV 0-6) and label outline (red): native slice, "
                     "network input after resize+crop, after flip+rotation", fontsize=8)
        fig.tight_layout()
        path = out / f"batch_{k}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(str(path))
    return paths


# ---------------------------------------------------------------------------- gradients

def gradient_balance(sampler: SliceSampler, spec, seed: int) -> dict:
    """At initialisation (prior-logit head), dL/dlogit summed over lesion vs background pixels
    for each loss term, and the cosine between bf16-autocast and fp32 parameter gradients."""
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = Loc2DNet(spec.loc2d)
    model.train()
    x, y = sampler.batch_arrays(sampler.draw(rng))
    x, y = flip_rotate(torch.from_numpy(x), torch.from_numpy(y), spec.train.rotation_deg, gen)
    out = {}
    for name, fn in LOSSES.items():
        for term in ("bce", "dice"):
            logits = model(x).detach().requires_grad_(True)
            bce, dice = terms(fn, logits, y)
            (bce if term == "bce" else dice).backward()
            g = logits.grad
            out[f"{name}.{term}"] = {"sum_dL_dlogit_lesion": float(g[y > 0].sum()),
                                     "sum_dL_dlogit_background": float(g[y == 0].sum()),
                                     "mean_abs_per_lesion_pixel": float(g[y > 0].abs().mean()),
                                     "mean_abs_per_background_pixel": float(g[y == 0].abs().mean())}
    # bf16 autocast vs fp32 on the same batch and weights (both in train mode: same BN batch statistics)
    grads = {}
    for amp in (False, True):
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            loss = LOSSES["current"](model(x), y)
        loss.backward()
        grads[amp] = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    out["bf16_vs_fp32_grad_cosine"] = float(F.cosine_similarity(grads[True], grads[False], dim=0))
    out["bf16_vs_fp32_grad_norm_ratio"] = float(grads[True].norm() / grads[False].norm())
    return out


def instrumented_run(sampler: SliceSampler, spec, loss_name: str, iters: int, epochs: int, seed: int, amp: bool,
                     out: Path) -> dict:
    """The training loop's recipe (SGD Nesterov, poly per epoch, clip 12, flip+rotation),
    logging each term and gradient norms per iteration."""
    fn = LOSSES[loss_name]
    t = spec.train
    torch.manual_seed(seed)
    model = Loc2DNet(spec.loc2d)
    opt = torch.optim.SGD(model.parameters(), lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay, nesterov=True)
    rows = []
    start = time.perf_counter()
    per_epoch = max(1, iters // epochs)
    for it in range(iters):
        epoch = it // per_epoch
        if it % per_epoch == 0:
            rng = np.random.default_rng([seed, epoch])
            gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
            for group in opt.param_groups:
                group["lr"] = poly_lr(t.lr, epoch, epochs)
        model.train()
        opt.zero_grad(set_to_none=True)
        x, y = sampler.batch_arrays(sampler.draw(rng))
        x, y = flip_rotate(torch.from_numpy(x), torch.from_numpy(y), t.rotation_deg, gen)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            logits = model(x)
        bce, dice = terms(fn, logits, y)
        (bce + dice).backward()
        head = float(torch.cat([p.grad.flatten() for p in model.head.parameters()]).norm())
        stem = float(model.encoder.conv1[0].weight.grad.norm()) if isinstance(model.encoder.conv1, torch.nn.Sequential) \
            else float(model.encoder.conv1.weight.grad.norm())
        total = float(torch.nn.utils.clip_grad_norm_(model.parameters(), 12.0))
        opt.step()
        with torch.no_grad():
            p = torch.sigmoid(logits.detach().float())
            rows.append(dict(iter=it, lr=opt.param_groups[0]["lr"], bce=float(bce), dice=float(dice),
                             grad_norm=total, grad_norm_head=head, grad_norm_stem=stem,
                             p_lesion=float(p[y > 0].mean()) if (y > 0).any() else float("nan"),
                             p_background=float(p[y == 0].mean()), head_bias=float(model.head.bias)))
    seconds = time.perf_counter() - start
    path = out / f"run_{loss_name}_{iters}.csv"
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    _plot_run(rows, out / f"run_{loss_name}_{iters}.png", f"{loss_name}, {iters} iterations")
    last = rows[-max(1, iters // 10):]
    return {"iters": iters, "seconds": round(seconds, 1), "csv": str(path),
            "last10pct_mean": {k: float(np.nanmean([r[k] for r in last])) for k in rows[0] if k != "iter"},
            "first10pct_mean": {k: float(np.nanmean([r[k] for r in rows[:max(1, iters // 10)]])) for k in rows[0] if k != "iter"},
            "model": model}


def _plot_run(rows, path: Path, name: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    it = [r["iter"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    axes[0].plot(it, [r["bce"] for r in rows], label="BCE term")
    axes[0].plot(it, [r["dice"] for r in rows], label="Dice term (1 - Dice)")
    axes[0].set_yscale("log")
    axes[0].legend(fontsize=7)
    axes[1].plot(it, [r["grad_norm"] for r in rows], label="all parameters")
    axes[1].plot(it, [r["grad_norm_head"] for r in rows], label="head")
    axes[1].set_yscale("log")
    axes[1].set_title("gradient norm (before clipping at 12)", fontsize=8)
    axes[1].legend(fontsize=7)
    axes[2].plot(it, [r["p_lesion"] for r in rows], ".", ms=2, label="mean p, lesion pixels")
    axes[2].plot(it, [r["p_background"] for r in rows], label="mean p, background pixels")
    axes[2].set_yscale("log")
    axes[2].legend(fontsize=7)
    for ax in axes:
        ax.set_xlabel("iteration")
    fig.suptitle(f"2D net, loss '{name}'", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ---------------------------------------------------------------------------- cue quality

def cue_dice(model: torch.nn.Module, studies, spec) -> dict:
    """Dice of cue > 0.5 against each study's label on the grid the cue is on (the network grid,
    i.e. the labels of the coronal slices the net ran on); mean over studies with lesions,
    pooled Dice, and false-positive voxels in lesion-free studies."""
    per, fp, inter, total, sizes, top = {}, {}, 0, 0, {}, 0.0
    for s in studies:
        cue = predict_cue(model, s.pet_2d, s.geometry, spec.loc2d)
        top = max(top, float(cue.max()))
        m, g = cue > 0.5, s.seg > 0
        if g.any():
            per[s.case_id] = float(2 * (m & g).sum() / (m.sum() + g.sum()))
            sizes[s.case_id] = int(g.sum())
            inter += int((m & g).sum())
            total += int(m.sum() + g.sum())
        else:
            fp[s.case_id] = int(m.sum())
    d = np.array(list(per.values()))
    return {"positive_studies": len(per), "negative_studies": len(fp), "mean_dice": float(d.mean()) if d.size else None,
            "median_dice": float(np.median(d)) if d.size else None, "pooled_dice": 2 * inter / total if total else None,
            "fp_voxels_negative_mean": float(np.mean(list(fp.values()))) if fp else None,
            "max_cue": top, "per_study": per, "lesion_voxels": sizes, "fp_voxels_negative": fp}


def _merge_json(path: Path, new: dict) -> None:
    """Add ``new``'s keys to the JSON object in ``path`` (so runs with other options accumulate)."""
    old = json.loads(path.read_text()) if path.exists() else {}
    path.write_text(json.dumps({**old, **new}, indent=2) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", type=Path, default=Path("data/diag/train80"))
    ap.add_argument("--test", type=Path, default=Path("data/diag/test"), help="held-out studies (all of them are scored)")
    ap.add_argument("--out", type=Path, default=Path("data/diag"))
    ap.add_argument("--weights", type=Path, nargs="*", default=[Path("weights/demo")], help="weights dirs whose cue is scored")
    ap.add_argument("--fold", type=int, default=0, help="training studies: all folds but this one of --train")
    ap.add_argument("--run-iters", type=int, nargs="*", default=[240],
                    help="iterations of the instrumented runs, one run per loss and value (none: no runs; the demo's 2D budget was 240)")
    ap.add_argument("--run-epochs", type=int, default=8, help="poly learning-rate steps of an instrumented run (the demo's: 8)")
    ap.add_argument("--runs", nargs="*", default=["old", "current"], choices=["old", "current"])
    ap.add_argument("--no-amp", action="store_true", help="instrumented runs in fp32 instead of bf16 autocast")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    spec = preset("lite")
    report: dict = {}

    ids = [r.case_id for r in find_studies([args.train]) if r.seg is not None]
    train_ids, _ = split(ids, args.fold)
    studies = load_training_studies([args.train], spec, set(train_ids))
    sampler = SliceSampler(studies, spec.loc2d, spec.train.batch_2d, spec.train.lesion_fraction_2d)
    pos_weight = set_current_loss(sampler)

    report["data_stats"] = data_stats(sampler, spec, 200, args.seed)
    report["data_stats"]["current_bce_lesion_weight"] = pos_weight
    report["alignment"] = alignment(sampler, spec, 60, args.seed)
    report["pngs"] = save_batch_pngs(sampler, spec, args.out, 3, args.seed)
    report["gradient_balance"] = gradient_balance(sampler, spec, args.seed)
    for name, value in report.items():
        (args.out / f"{name}.json").write_text(json.dumps(value, indent=2) + "\n")
        print(name, json.dumps(value, indent=1)[:3000])

    runs = {}
    for iters in args.run_iters:
        for name in args.runs:
            r = instrumented_run(sampler, spec, name, iters, args.run_epochs, args.seed, not args.no_amp, args.out)
            runs[f"{name}_{iters}"] = r
            print(f"run {name} ({iters} iterations): {r['seconds']} s; first 10%: {r['first10pct_mean']}; "
                  f"last 10%: {r['last10pct_mean']}")
    _merge_json(args.out / "runs.json", {k: {kk: vv for kk, vv in v.items() if kk != "model"} for k, v in runs.items()})

    test = load_training_studies([args.test], spec)
    scores = {}
    for w in args.weights:
        wspec, _ = read_config(w)
        model = load_weights(Loc2DNet(wspec.loc2d), w, "loc2d")
        scores[str(w)] = cue_dice(model, test, wspec)
    for name, r in runs.items():
        scores[f"instrumented run {name}"] = cue_dice(r["model"], test, spec)
    _merge_json(args.out / "cue_dice.json", scores)
    for k, v in scores.items():
        print(f"cue Dice on {args.test} ({v['positive_studies']} studies with lesions, {v['negative_studies']} without): "
              f"{k}: mean {v['mean_dice']:.3f}, pooled {v['pooled_dice']:.3f}, FP voxels/negative study "
              f"{v['fp_voxels_negative_mean']}, max cue {v['max_cue']:.3g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
