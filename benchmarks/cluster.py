"""Studies per minute: one plain l2s-infer process against Ray with 1 and 2 single-thread workers.

    python benchmarks/cluster.py [--studies 8] [--size small] [--engine DIR] [--work DIR] [--out DIR]

The same phantom studies (autoPET layout, written once under ``--work``) and the same engine
(default: the committed demo weights, exported under ``--work`` if no ``--engine``) run
through ``l2s-infer`` (``--backend onnxruntime``, ``--overwrite``) as:

- ``plain``: one process, 2 backend threads, its reader and writer threads;
- ``ray-1``: ``--ray local --ray-workers 1 --threads 1``;
- ``ray-2``: ``--ray local --ray-workers 2 --threads 1``.

Each run is a fresh process, timed end to end (``wall``, Ray's start included) and by its
report (``running``: Ray's dispatch of the studies, or the plain run's own wall time; ``busy``:
the sum of the studies' own stage times). Driver overhead per study: Ray's round trip for an
empty call to a worker, measured alone (500 calls), and what the runs show: running time x
workers - busy time, per study (idle workers included).
Writes ``cluster-<device>-<date>.json`` into ``--out``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import device_slug, machine  # noqa: E402

RUNS = {"plain": ["--threads", "2"],
        "ray-1": ["--ray", "local", "--ray-workers", "1", "--threads", "1"],
        "ray-2": ["--ray", "local", "--ray-workers", "2", "--threads", "1"]}


def _studies(work: Path, count: int, size: str) -> Path:
    from l2s_engine.phantoms import make_phantom
    from l2s_engine.phantoms.files import write_study

    root = work / f"studies-{size}-{count}"
    if not root.is_dir():
        for i in range(count):
            write_study(make_phantom(i, 11, size), root)
    return root


def _engine(work: Path) -> Path:
    engine = work / "engine"
    if not (engine / "manifest.json").is_file():
        weights = Path(__file__).resolve().parents[1] / "weights" / "demo"
        subprocess.run(["l2s-export", str(weights), "-o", str(engine), "--no-tensorrt"], check=True,
                       stdout=subprocess.DEVNULL)
    return engine


def _run(name: str, engine: Path, studies: Path, out: Path) -> dict:
    command = ["l2s-infer", "--engine", str(engine), str(studies), "-o", str(out), "-q", "--overwrite",
               "--backend", "onnxruntime", *RUNS[name]]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{name} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    report = json.loads((out / "report.json").read_text())
    n = len(report["studies"])
    busy = sum(sum(s["timings"].values()) for s in report["studies"])
    # the studies' own time: Ray's dispatch, or the plain run's wall less opening the engine
    # and finding the studies (about what Ray's start and the workers' engine opening are)
    running = report["backend"].get("dispatch_seconds") or report["wall_seconds"]
    workers = 2 if name == "ray-2" else 1
    return {"wall_s": wall, "studies": n, "studies_per_minute": 60.0 * n / wall, "running_s": running,
            "studies_per_minute_running": 60.0 * n / running, "busy_s": busy, "workers": workers,
            "idle_or_overhead_s_per_study": max(0.0, running * workers - busy) / n}


def _round_trip(calls: int = 500) -> float:
    import ray

    @ray.remote(num_cpus=1)
    class Echo:
        def ping(self, x):
            return x

    ray.init(num_cpus=1, include_dashboard=False, logging_level="ERROR")
    try:
        echo = Echo.remote()
        ray.get(echo.ping.remote(0))
        start = time.perf_counter()
        for i in range(calls):
            ray.get(echo.ping.remote(i))
        return (time.perf_counter() - start) / calls
    finally:
        ray.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=8)
    parser.add_argument("--size", default="small", choices=("tiny", "small", "full"))
    parser.add_argument("--engine", type=Path)
    parser.add_argument("--work", type=Path, default=Path("data/bench-cluster"))
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    studies = _studies(args.work, args.studies, args.size)
    engine = args.engine or _engine(args.work)
    results = {name: _run(name, engine, studies, args.work / f"out-{name}") for name in RUNS}
    trip = _round_trip()
    info = machine()
    report = {"date": datetime.date.today().isoformat(), "machine": info, "size": args.size, "studies": args.studies,
              "engine": str(engine), "results": results, "ray_round_trip_s": trip}
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"cluster-{device_slug(info)}-{report['date']}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    base = results["plain"]["studies_per_minute"]
    for name, r in results.items():
        print(f"{name:>6}: {r['studies_per_minute']:.2f} studies/min end to end ({r['wall_s']:.1f} s, x"
              f"{r['studies_per_minute'] / base:.2f} of plain); running {r['studies_per_minute_running']:.2f} studies/min "
              f"({r['running_s']:.1f} s); idle or overhead {r['idle_or_overhead_s_per_study']:.2f} s per study per worker")
    print(f"Ray round trip of an empty call: {1e3 * trip:.2f} ms  ({info['cpu']}, {info['cores']} cores) -> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
