"""Cohorts on a Ray cluster: long-lived workers that each hold an opened engine.

Ray (an existing cluster engine; extra ``l2s-engine[ray]``) places one actor per GPU
(``num_gpus=1``) or per group of CPU cores; each opens the engine once and then runs whole
studies (``scheduler.run_one``): it reads the inputs and writes the outputs on the shared
output folder itself, so no volume passes through the driver, which only hands out study
references and collects small records. Each worker has at most ``IN_FLIGHT`` studies queued.

A worker process that dies (killed, out of memory, node lost) is restarted by Ray, and the
study it held is tried again on it (``max_restarts``, ``max_task_retries``): ``run_one`` is
idempotent, so a study that was published before the worker died is not written twice, and
one that was not has left at most temporary files (outputs are renamed into place only when
complete).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace

from tqdm import tqdm

from .errors import L2SError

log = logging.getLogger(__name__)

RAY_INSTALL = "pip install 'l2s-engine[ray]'"
IN_FLIGHT = 2          # studies per worker: one running, one waiting, so a worker never idles
MAX_RESTARTS = 3       # per worker; then its studies fail by name
MAX_STUDY_TRIES = 2    # a study on a worker that died is tried this many more times


class ClusterError(L2SError):
    """Ray is missing, or the cluster cannot be reached or has no room for a worker."""


def ray_module():
    """Ray, or a ClusterError naming the extra to install."""
    try:
        import ray
    except ImportError as exc:
        raise ClusterError(f"--ray needs Ray, which is not installed ({exc}); {RAY_INSTALL}") from exc
    return ray


@dataclass(frozen=True)
class Placement:
    """What each worker asks of the cluster."""

    workers: int | None = None   # None: as many as the cluster's GPUs (or CPUs / cpus) allow
    cpus: int = 1                # CPU cores per worker (its backend threads)
    gpus: int = 0                # GPUs per worker (0 or 1)


class StudyWorker:
    """One worker: an opened engine and the run's output options (made a Ray actor by ``run_on_ray``)."""

    def __init__(self, engine_dir: Path, run, outputs):
        from . import provenance
        from .executors import open_engine

        self.engine = open_engine(engine_dir, run)
        self.engine.__enter__()
        self.outputs = outputs
        self.run = provenance.run_key(self.engine)

    def describe(self) -> tuple[dict, dict, int]:
        """(the engine's description, the run key, this process's id)."""
        return self.engine.describe(), self.run, os.getpid()

    def run_study(self, ref) -> dict:
        """Run one study; its record as a dict."""
        from .scheduler import run_one

        return asdict(run_one(self.engine, ref, self.outputs, self.run))


def connect(address: str, cpus: int | None = None):
    """Start a local Ray instance (``address == "local"``) or join a running cluster.

    Raises:
        ClusterError: Ray is missing or the cluster cannot be reached.
    """
    ray = ray_module()
    try:
        if address == "local":
            ray.init(num_cpus=cpus or os.cpu_count(), include_dashboard=False, logging_level=logging.WARNING)
        else:
            ray.init(address=address, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ClusterError(f"--ray {address}: cannot start or reach a Ray cluster ({exc}); give `local`, `auto` "
                           "(the cluster this machine belongs to) or the head's address host:6379") from exc
    return ray


def run_on_ray(ray, engine_dir: Path, run, refs: list, outputs, placement: Placement = Placement(),
               progress: bool = True, on_start=None) -> tuple[list, object]:
    """Run ``refs`` on the connected Ray cluster; returns (one StudyRecord per ref, the engine's stand-in).

    ``run``: the resolved run (``core.resolve_run``) every worker opens the engine with. The
    stand-in has ``describe()``, ``run`` and ``options``, what ``run_report.write_report`` needs;
    ``on_start`` is called with the engine's description once the first worker has opened it.

    Raises:
        ClusterError: the cluster has no room for one worker, or no worker could open the engine.
    """
    from .run_report import StudyRecord
    from .scheduler import plan_studies, prepare_outputs

    prepare_outputs(outputs, shared=True)
    count = placement.workers or _workers_that_fit(ray, placement)
    remote = ray.remote(max_restarts=MAX_RESTARTS, max_task_retries=MAX_STUDY_TRIES)(StudyWorker)
    actor = remote.options(num_cpus=placement.cpus, num_gpus=placement.gpus)
    workers = [actor.remote(engine_dir, run, outputs) for _ in range(count)]
    try:
        info, key, _pid = ray.get(workers[0].describe.remote())
    except Exception as exc:  # the engine could not be opened on the cluster (its error inside)
        raise ClusterError(f"no Ray worker could open the engine {engine_dir}: {exc}") from exc
    info = {**info, "executor": f"ray ({count} workers x {placement.cpus} CPU"
                               f"{f' + {placement.gpus} GPU' if placement.gpus else ''})"}
    if on_start is not None:
        on_start(info)
    records = {r.case_id: StudyRecord(r.case_id, source=str(r.folder)) for r in refs}
    todo, _unvouched = plan_studies(refs, outputs, key, records)
    log.info("Ray: %d worker(s) x %d CPU%s, %d studies to run", count, placement.cpus,
             f" + {placement.gpus} GPU" if placement.gpus else "", len(todo))
    info["dispatch_seconds"] = _dispatch(ray, workers, todo, records, progress)
    out = [r if isinstance(r, StudyRecord) else StudyRecord.from_dict(r)
           for r in (records[ref.case_id] for ref in refs)]
    return out, SimpleNamespace(describe=lambda: info, run=run, options=run.options)


def _workers_that_fit(ray, placement: Placement) -> int:
    resources = ray.cluster_resources()
    key, need = ("GPU", placement.gpus) if placement.gpus else ("CPU", placement.cpus)
    count = int(resources.get(key, 0) // max(need, 1))
    if count < 1:
        raise ClusterError(f"the Ray cluster has {resources.get(key, 0):g} {key}(s), a worker needs {need}; "
                           "lower --threads or add nodes")
    return count


def _dispatch(ray, workers: list, todo: list, records: dict, progress: bool) -> float:
    """Keep every worker ``IN_FLIGHT`` studies deep until all are done; record each as it ends.

    Returns the seconds from the first study handed out to the last one back.
    """
    queue = list(todo)
    pending: dict = {}
    depth = {i: 0 for i in range(len(workers))}
    bar = tqdm(total=len(todo), desc="studies", unit="study", disable=not progress)
    started = time.perf_counter()
    while queue or pending:
        for i in depth:
            while queue and depth[i] < IN_FLIGHT:
                ref = queue.pop(0)
                pending[workers[i].run_study.remote(ref)] = (ref, i)
                depth[i] += 1
        done, _ = ray.wait(list(pending), num_returns=1)
        ref, i = pending.pop(done[0])
        depth[i] -= 1
        try:
            records[ref.case_id] = ray.get(done[0])
        except Exception as exc:  # the worker died more often than Ray retries, or Ray itself failed
            record = records[ref.case_id]
            record.status, record.error = "failed", f"worker lost: {type(exc).__name__}: {exc}".splitlines()[0]
            log.error("%s: FAILED: %s", ref.case_id, record.error)
        bar.update(1)
    bar.close()
    seconds = time.perf_counter() - started
    log.info("Ray: %d studies in %.1f s", len(todo), seconds)
    return round(seconds, 3)
