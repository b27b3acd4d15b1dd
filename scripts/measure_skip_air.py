"""How much time skipping air saves, and whether it changes the mask, on phantom studies.

    python scripts/measure_skip_air.py ENGINE_DIR [--size small|full] [-n 2]

Runs each phantom through the CPU pipeline with and without skipping and prints the stage
times, the slices/windows run and the number of differing mask voxels. In-memory phantoms,
no files.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from l2s_engine.phantoms import make_phantom
from l2s_engine.core import InferOptions
from l2s_engine.pipeline import HostEngine
from l2s_engine.resources import peak_rss_mb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("engine")
    parser.add_argument("--size", default="small")
    parser.add_argument("-n", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1000)
    args = parser.parse_args()
    # the whole cue in both, so that only air skipping differs
    with HostEngine(args.engine, InferOptions(full_cue=True)) as skip, \
            HostEngine(args.engine, InferOptions(skip_air=False, full_cue=True)) as full:
        for index in range(args.n):
            p = make_phantom(index, args.seed, args.size)
            rows = {}
            for name, engine in (("skip", skip), ("all", full)):
                start = time.perf_counter()
                rows[name] = engine.segment(p.pet, p.ct, p.geometry)
                rows[name].timings["total"] = time.perf_counter() - start
            for name, r in rows.items():
                print(f"{p.case_id} {args.size} {name:>4}: " + " ".join(f"{k} {v:.2f}s" for k, v in r.timings.items())
                      + f" | slices {r.work['slices_run']}/{r.work['slices_total']} windows "
                        f"{r.work['windows_run']}/{r.work['windows_total']} | mask {int(r.mask.sum())} voxels")
            diff = int(np.count_nonzero(rows["skip"].mask != rows["all"].mask))
            saved = rows["all"].timings["total"] - rows["skip"].timings["total"]
            print(f"{p.case_id}: differing mask voxels {diff}; skipping saved {saved:.2f} s "
                  f"({saved / rows['all'].timings['total']:.0%}); peak RSS so far {peak_rss_mb():.0f} MiB")


if __name__ == "__main__":
    main()
