"""The paper's Table 1 on phantom studies: 2D alone, 3D alone, L2SNet, L2SNet + the components rule.

    python benchmarks/table1.py --engine ENGINE [--studies 30] [--seed 9001] [--size small]
        [--variety wide] [--out docs/table1] [--threads N]

One run of the engine per study (``HostEngine``, whole cue, maps kept) gives the 3D
probabilities and the cue on the study's grid; the four masks are made from those same maps:

- 2D alone: ``cue > cue_threshold`` (0.5);
- 3D alone: ``p3d > high_threshold`` (0.5);
- L2SNet: the paper rule, ``p3d > (cue > 0.5 ? 0.1 : 0.5)``;
- L2SNet + components: the authors' public connected-component rules.

Metrics are autoPET's (``l2s_engine.metrics``): Dice and FNV averaged over the studies with
lesions (as the paper's Table 1), FPV over every study; both conventions are written to the JSON.
The studies are drawn with ``--seed`` (choose one the weights never saw), half of them with
lesions. Writes ``<out>.json`` and ``<out>.md``.

Why L2SNet's FNV can only be below 3D alone's by lesions the cue rescues: a lesion (an
18-connected component of the reference) counts as missed when no predicted voxel touches
it, and the paper rule adds to 3D alone only voxels with cue > 0.5 and p3d in (0.1, 0.5].
So each lesion's fate is also counted (``FATES``): found by 3D alone; rescued by the cue;
within the cue's reach (p3d > 0.1 somewhere in it) but the cue did not fire there; out of
reach (p3d <= 0.1 everywhere in it: no cue can add it).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

METHODS = ("2D alone", "3D alone", "L2SNet", "L2SNet + components")
FATES = ("found by 3D alone", "rescued by the cue", "within reach, no cue", "out of reach")
PAPER = {"2D alone": (0.329, 21.945, 1.803), "3D alone": (0.401, 3.622, 4.204),
         "L2SNet": (0.415, 3.244, 3.662), "L2SNet + components": (0.414, 1.611, 1.874)}


def masks_of(p3d: np.ndarray, cue: np.ndarray, fusion) -> dict[str, np.ndarray]:
    """The four methods' masks from one study's maps."""
    from l2s_engine.postprocess import fuse

    return {"2D alone": (cue > fusion.cue_threshold).astype(np.uint8),
            "3D alone": (p3d > fusion.high_threshold).astype(np.uint8),
            "L2SNet": fuse("paper", p3d, cue, fusion),
            "L2SNet + components": fuse("components", p3d, cue, fusion)}


def lesion_fates(seg: np.ndarray, p3d: np.ndarray, cue: np.ndarray, fusion) -> list[tuple[str, int]]:
    """(fate, voxels) of each lesion of ``seg`` (18-connected), under the paper rule's thresholds."""
    import cc3d

    from l2s_engine.metrics import CONNECTIVITY

    labels = cc3d.connected_components(seg > 0, connectivity=CONNECTIVITY)
    fates = []
    for k, box in enumerate(cc3d.statistics(labels)["bounding_boxes"][1:], start=1):
        inside = labels[box] == k
        p, c = p3d[box][inside], cue[box][inside]
        if (p > fusion.high_threshold).any():
            fate = FATES[0]
        elif ((c > fusion.cue_threshold) & (p > fusion.low_threshold)).any():
            fate = FATES[1]
        else:
            fate = FATES[2] if (p > fusion.low_threshold).any() else FATES[3]
        fates.append((fate, int(inside.sum())))
    return fates


def summarise(cases: dict[str, list]) -> dict[str, dict]:
    """Per method: the positive-only convention (Dice and FNV over the studies with lesions, FPV
    over every study: NaN Dice and FNV of lesion-free studies are left out), and all-cases too."""
    from l2s_engine.metrics import CONVENTIONS, aggregate

    out = {}
    for method, scored in cases.items():
        table = aggregate(scored, "positive-only")
        out[method] = {"dice_positive": table["dice"], "fpv_ml_all": table["fpv_ml"],
                       "fnv_ml_positive": table["fnv_ml"], **{c: aggregate(scored, c) for c in CONVENTIONS}}
    return out


def markdown(result: dict) -> str:
    rows = ["| method | Dice (positives) | FPV mL (all) | FNV mL (positives) | paper: Dice / FPV / FNV |",
            "|---|---|---|---|---|"]
    for method in METHODS:
        m, p = result["methods"][method], PAPER[method]
        rows.append(f"| {method} | {m['dice_positive']:.3f} | {m['fpv_ml_all']:.3f} | {m['fnv_ml_positive']:.3f} | "
                    f"{p[0]:.3f} / {p[1]:.3f} / {p[2]:.3f} |")
    r = result
    head = (f"{r['studies']} phantom studies ({r['positive']} with lesions), seed {r['seed']}, size {r['size']}, "
            f"variety {r['variety']}; engine {r['engine']} ({r['backend']}); {r['seconds']:.0f} s on {r['cpu']}.")
    command = f"\n\nCommand: `{r['command']}`" if r.get("command") else ""
    if "lesions" in r:  # absent from results written before the fates were counted
        rows += ["", "| lesion's fate (paper rule) | lesions | voxels |", "|---|---|---|"]
        rows += [f"| {f} | {r['lesions'][f]['lesions']} | {r['lesions'][f]['voxels']} |" for f in FATES]
    return head + command + "\n\n" + "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--engine", type=Path, required=True, help="engine directory (l2s-export)")
    p.add_argument("--studies", type=int, default=30, help="phantom studies (default 30; half with lesions)")
    p.add_argument("--seed", type=int, default=9001, help="phantom seed (default 9001: never trained on)")
    p.add_argument("--size", default="small", help="phantom size (default small)")
    p.add_argument("--variety", default="wide", help="phantom variety (default wide)")
    p.add_argument("--threads", type=int, help="backend threads (default: the backend's)")
    p.add_argument("--out", type=Path, default=Path("docs") / "table1", help="output stem (default docs/table1)")
    args = p.parse_args(argv)

    from l2s_engine.core import InferOptions
    from l2s_engine.metrics import case_metrics
    from l2s_engine.phantoms import make_phantom
    from l2s_engine.pipeline import HostEngine

    start = time.perf_counter()
    cases: dict[str, list] = {m: [] for m in METHODS}
    lesions = {f: {"lesions": 0, "voxels": 0} for f in FATES}
    with HostEngine(args.engine, InferOptions(full_cue=True, threads=args.threads)) as engine:
        info = engine.describe()
        for i in range(args.studies):
            study = make_phantom(i, seed=args.seed, size=args.size, variety=args.variety)
            result = engine.segment(study.pet, study.ct, study.geometry)
            for method, mask in masks_of(result.p3d, result.cue, engine.fusion).items():
                cases[method].append(case_metrics(mask, study.seg, study.geometry.voxel_volume_ml, study.case_id))
            for fate, voxels in lesion_fates(study.seg, result.p3d, result.cue, engine.fusion):
                lesions[fate]["lesions"] += 1
                lesions[fate]["voxels"] += voxels
            print(f"{i + 1}/{args.studies} {study.case_id}: {int(study.seg.sum())} lesion voxels; predicted "
                  + ", ".join(f"{m} {c[-1].pred_voxels}" for m, c in cases.items()), flush=True)
    out = {"studies": args.studies, "positive": int(sum(c.positive for c in cases["L2SNet"])), "seed": args.seed,
           "size": args.size, "variety": args.variety, "engine": str(args.engine), "backend": info["name"],
           "cpu": info["cpu"], "cpu_flags": info["cpu_flags"], "seconds": time.perf_counter() - start,
           "methods": summarise(cases), "lesions": lesions, "paper_table1": PAPER,
           "command": shlex.join(["python", "benchmarks/table1.py", *(sys.argv[1:] if argv is None else argv)])}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(out, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(out))
    print(markdown(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
