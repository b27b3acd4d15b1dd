"""Many studies through one engine (either executor): a reader thread prefetches, a writer thread writes.

Queues are bounded (one study read ahead, two waiting to be written), so memory does not
grow with the number of studies. A study that fails is recorded and the rest go on.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from . import provenance
from .errors import OutputError
from .files import ensure_writable_dir, remove_stale_partials
from .io import StudyRef, load_study
from .io.images import image_from_array, write_image_atomic
from .io.writing import write_mask
from .metrics import case_metrics
from .core import EngineCore
from .readout import lesion_rows, pet_readout
from .resources import peak_rss_mb
from .run_report import StudyRecord

log = logging.getLogger(__name__)

FORMATS = {"nii.gz": ".nii.gz", "mha": ".mha", "dicom-seg": None}
SEG_SUFFIX = "_seg.dcm"  # DICOM studies: the DICOM Segmentation beside (or instead of) the mask
SHARED_STALE_S = 3600.0  # a temporary file this old in a shared output folder is left by a killed process
_DONE = object()


@dataclass(frozen=True)
class OutputOptions:
    """What to write for each study, and where.

    Attributes:
        out_dir: masks go to ``out_dir/<case_id><suffix>``; report.json beside them.
        fmt: "nii.gz" or "mha" (DICOM studies: a DICOM SEG ``<case_id>_seg.dcm`` too), or
            "dicom-seg" (DICOM studies only: the SEG alone).
        save_probs: also write the 3D probabilities and the cue (float32) per study.
        qc: also write a coronal PET MIP with the mask overlaid (PNG) per study.
        overwrite: redo studies even when their record says their outputs are done.
        records_dir: where each study's provenance record goes (default ``out_dir/provenance``).
        max_voxels: refuse input images whose header declares more voxels (None: no limit).
    """

    out_dir: Path
    fmt: str = "nii.gz"
    save_probs: bool = False
    qc: bool = False
    overwrite: bool = False
    records_dir: Path | None = None
    max_voxels: int | None = None

    def __post_init__(self):
        if self.fmt not in FORMATS:
            raise OutputError(f"output format must be one of {', '.join(FORMATS)}, got {self.fmt!r}")

    def paths(self, case_id: str, dicom: bool = False) -> dict[str, Path]:
        """Every file written for ``case_id`` (a DICOM study when ``dicom``) under these options.

        Raises:
            OutputError: "dicom-seg" alone asked for a study that is not DICOM.
        """
        suffix = FORMATS[self.fmt]
        if suffix is None and not dicom:
            raise OutputError(f"{case_id}: --format dicom-seg writes DICOM Segmentations, which need DICOM input; "
                              "this study is not DICOM: run it with --format nii.gz or mha")
        paths = {"mask": self.out_dir / f"{case_id}{suffix}"} if suffix is not None else {}
        if dicom:
            paths["seg"] = self.out_dir / f"{case_id}{SEG_SUFFIX}"
        if self.save_probs:
            suffix = suffix or ".nii.gz"
            paths["p3d"] = self.out_dir / "probs" / f"{case_id}_p3d{suffix}"
            paths["cue"] = self.out_dir / "probs" / f"{case_id}_cue{suffix}"
        if self.qc:
            paths["qc"] = self.out_dir / "qc" / f"{case_id}.png"
        return paths

    @property
    def records(self) -> Path:
        """The folder of the provenance records (see ``l2s_engine.provenance``)."""
        return self.records_dir or self.out_dir / provenance.RECORDS

    def record_path(self, case_id: str) -> Path:
        """The provenance record of ``case_id``."""
        return self.records / f"{case_id}.json"

    def folders(self) -> list[Path]:
        """Every folder this run writes into."""
        folders = [self.out_dir, self.records]
        folders += [self.out_dir / "probs"] if self.save_probs else []
        return folders + ([self.out_dir / "qc"] if self.qc else [])


@dataclass
class WriteJob:
    """What the writer needs of one study: only the outputs, not the input volumes."""

    ref: StudyRef
    geometry: object
    protected: tuple[Path, ...]
    mask: np.ndarray
    p3d: np.ndarray | None = None
    cue: np.ndarray | None = None
    pet_mip: np.ndarray | None = None
    cue_mip: np.ndarray | None = None                      # coronal MIP of cue > threshold (QC)
    dicom_source: list[Path] = field(default_factory=list)  # the PT files in the mask's z order
    readout: dict = field(default_factory=dict)             # summary and lesion rows, kept in the record


def run_studies(engine: EngineCore, refs: list[StudyRef], outputs: OutputOptions, progress: bool = True,
                shared: bool = False) -> list[StudyRecord]:
    """Segment every study of ``refs`` and write its outputs; returns one record per study.

    A study is skipped only when its provenance record shows that its outputs were made from
    these very inputs with this engine and these options (``provenance.why_not_done``), unless
    ``outputs.overwrite``. At most two studies' volumes are in memory at once (the one running
    and the one read ahead). Every output folder is checked for writability first, and
    temporary files left by an interrupted run are removed (``shared``: see ``prepare_outputs``).

    Raises:
        OutputError: an output folder is not usable (before any study is run).
    """
    prepare_outputs(outputs, shared)
    records = {r.case_id: StudyRecord(r.case_id, source=str(r.folder)) for r in refs}
    run = provenance.run_key(engine)
    todo, unvouched = plan_studies(refs, outputs, run, records)
    loaded: queue.Queue = queue.Queue(maxsize=1)
    slot = threading.Semaphore(1)  # one study read ahead, loaded or loading
    to_write: queue.Queue = queue.Queue(maxsize=2)
    stop = threading.Event()
    # the GPU pipeline uploads the next study from the reader thread while this one runs
    reader = threading.Thread(target=_read_all, args=(todo, loaded, slot, stop, engine.upload, outputs.max_voxels),
                              name="l2s-reader", daemon=True)
    writer = threading.Thread(target=_write_all, args=(to_write, outputs, records, run, unvouched), name="l2s-writer",
                              daemon=True)
    reader.start()
    writer.start()
    overall = tqdm(total=len(todo), desc="studies", unit="study", disable=not progress)
    batches = tqdm(desc="batches", unit="batch", leave=False, disable=not progress, position=1)
    try:
        while (item := loaded.get()) is not _DONE:
            slot.release()
            ref, study, uploaded, error, seconds = item
            del item
            record = records[ref.case_id]
            record.timings["read"] = seconds
            if uploaded is not None:  # host side of the upload, in the reader thread
                record.timings["read"] = seconds - uploaded.seconds
                record.timings["upload"] = uploaded.seconds
            if error is None:
                batches.set_description(ref.case_id[:24])
                job, error = _segment(engine, study, uploaded, record, outputs, _bar_progress(batches))
                del study, uploaded
                if job is not None:
                    to_write.put(job)
                    del job
            if error is not None:
                record.status, record.error = "failed", f"{type(error).__name__}: {error}"
                log.error("%s: FAILED: %s", ref.case_id, error)
                if ref.case_id in unvouched:
                    _withdraw(outputs, ref)
            record.peak_rss_mb = round(peak_rss_mb(), 1)
            overall.update(1)
    finally:
        stop.set()
        to_write.put(_DONE)
        writer.join()
        batches.close()
        overall.close()
    return [records[r.case_id] for r in refs]


def prepare_outputs(outputs: OutputOptions, shared: bool = False) -> None:
    """Check every output folder is writable and remove temporary files of an interrupted run.

    Args:
        outputs: the run's outputs.
        shared: other processes (parts of one cohort) write into the same folders now: only
            temporary files older than ``SHARED_STALE_S`` are theirs to lose, no write takes that long.

    Raises:
        OutputError: naming the folder that is a file, cannot be created or is not writable.
    """
    started = time.time()
    for folder in outputs.folders():
        ensure_writable_dir(folder)
    stale = remove_stale_partials(outputs.folders(), older_than=started - (SHARED_STALE_S if shared else 0.0))
    if stale:
        log.info("removed %d temporary file(s) left by an interrupted run", len(stale))


def plan_studies(refs: list[StudyRef], outputs: OutputOptions, run: dict,
                 records: dict[str, StudyRecord]) -> tuple[list[StudyRef], set[str]]:
    """(the studies to run, the case ids whose existing outputs no record vouches for)."""
    todo, unvouched = [], set()
    for ref in refs:
        try:
            paths = outputs.paths(ref.case_id, ref.is_dicom)
        except OutputError as exc:
            records[ref.case_id].status, records[ref.case_id].error = "failed", f"OutputError: {exc}"
            log.error("%s: FAILED: %s", ref.case_id, exc)
            continue
        earlier = provenance.read_record(outputs.record_path(ref.case_id))
        why = provenance.why_not_done(earlier, ref, run, paths)
        if why is None and not outputs.overwrite:
            records[ref.case_id].status = "skipped"
            _carry_over(records[ref.case_id], earlier)
            log.info("%s: done earlier from these inputs with this engine and options, skipped "
                     "(--overwrite redoes it)", ref.case_id)
            continue
        if why is not None and any(p.exists() for p in paths.values()):
            unvouched.add(ref.case_id)
            log.info("%s: outputs exist but are redone: %s", ref.case_id, why)
        todo.append(ref)
    return todo, unvouched


def _carry_over(record: StudyRecord, earlier: dict) -> None:
    """What a skipped study's record keeps from the run that made its outputs (report, lesions.csv)."""
    record.outputs = {k: v["path"] for k, v in earlier.get("outputs", {}).items() if isinstance(v, dict) and "path" in v}
    readout = earlier.get("readout") or {}
    record.set_readout(readout.get("summary", {}), readout.get("lesions", []))
    record.inputs = earlier.get("study_inputs", {})


def _bar_progress(bar: tqdm):
    """A ``progress(done, total)`` callback that shows one study's network batches on ``bar``."""
    def progress(done: int, total: int) -> None:
        if done == 0:
            bar.reset(total=total)
            return
        bar.total = total
        if done > bar.n:
            bar.update(done - bar.n)
        else:  # the total changed (the cue on demand narrowed the 2D stage)
            bar.refresh()

    return progress


def _segment(engine: EngineCore, study, uploaded, record: StudyRecord, outputs: OutputOptions, progress) -> tuple:
    """(write job, None) for one loaded study, or (None, the exception)."""
    try:
        result = engine.segment(study.pet, study.ct, study.geometry, progress=progress, uploaded=uploaded)
        record.warnings.extend(study.warnings)
        record.timings.update(result.timings)
        record.work = result.work
        record.spacing = result.spacing
        record.inputs = study.info
        record.mask_voxels = int(result.mask.sum())
        record.mask_ml = record.mask_voxels * study.geometry.voxel_volume_ml
        if study.seg is not None:
            record.metrics = asdict(case_metrics(result.mask, study.seg, study.geometry.voxel_volume_ml, study.case_id))
        start = time.perf_counter()
        # the cue says which lesions it marked only where it was computed everywhere (not on demand)
        cue = result.cue if result.cue is not None and not engine.cue_on_demand else None
        readout = pet_readout(result.mask, study.pet, study.geometry, cue, engine.fusion.cue_threshold)
        record.set_readout(readout.summary(), lesion_rows(study.case_id, readout))
        record.timings["readout"] = time.perf_counter() - start
        job = WriteJob(study.ref, study.geometry,
                       _input_files(study.ref), result.mask, dicom_source=study.dicom_source,
                       readout={"summary": readout.summary(), "lesions": record.lesions, "study_inputs": study.info})
        if outputs.save_probs:
            job.p3d, job.cue = result.p3d, result.cue
        if outputs.qc:
            from .qc import coronal_view

            job.pet_mip = coronal_view(study.pet, study.geometry)
            if cue is not None:
                job.cue_mip = coronal_view(cue > engine.fusion.cue_threshold, study.geometry)
        return job, None
    except Exception as exc:  # one study's failure must not stop the others
        log.debug("%s failed", study.case_id, exc_info=True)
        return None, exc


def _input_files(ref: StudyRef) -> tuple[Path, ...]:
    """Every input file of a study: none of them may be overwritten by an output."""
    files = [p for p in (ref.pet, ref.ct, ref.seg) if p is not None]
    for series in (ref.pet_series, ref.ct_series):
        files += list(series.files) if series is not None else []
    return tuple(files)


def _read_all(refs: list[StudyRef], loaded: queue.Queue, slot: threading.Semaphore, stop: threading.Event,
              upload, max_voxels: int | None = None) -> None:
    for ref in refs:
        slot.acquire()
        if stop.is_set():
            return
        start = time.perf_counter()
        try:
            study = load_study(ref, max_voxels)
            uploaded = upload(study.pet, study.ct)
            item = (ref, study, uploaded, None, time.perf_counter() - start)
            del study, uploaded
        except Exception as exc:  # reported by the main thread with the study's name
            item = (ref, None, None, exc, time.perf_counter() - start)
        loaded.put(item)
        del item
    loaded.put(_DONE)


def _write_all(to_write: queue.Queue, outputs: OutputOptions, records: dict[str, StudyRecord], run: dict,
               unvouched: set[str]) -> None:
    while (job := to_write.get()) is not _DONE:
        _publish(job, outputs, records[job.ref.case_id], run)
        del job


def _publish(job: WriteJob, outputs: OutputOptions, record: StudyRecord, run: dict) -> None:
    """Write one study's outputs, then its provenance record; on failure withdraw them all."""
    start = time.perf_counter()
    try:
        written = write_outputs(job, outputs)
        # last, once every output is in place: the record that makes the study "done"
        readout = {"summary": job.readout.get("summary", {}), "lesions": job.readout.get("lesions", [])}
        provenance.write_record(outputs.record_path(job.ref.case_id), provenance.make_record(
            job.ref, run, written, readout=readout, study_inputs=job.readout.get("study_inputs", {})))
        record.outputs = {k: str(p) for k, p in written.items()}
        record.status = "ok"
    except Exception as exc:
        record.status, record.error = "failed", f"{type(exc).__name__}: {exc}"
        log.error("%s: FAILED writing outputs: %s", job.ref.case_id, exc)
        # a study is published whole or not at all: no mask without its maps, no old maps
        _withdraw(outputs, job.ref)
    record.timings["write"] = time.perf_counter() - start


def run_one(engine: EngineCore, ref: StudyRef, outputs: OutputOptions, run: dict) -> StudyRecord:
    """One study from its files to its published outputs, in this thread (a cluster worker's unit).

    Idempotent: a study whose record shows it done (say, by an earlier try of this very call
    that died before it could answer) is reported as skipped, not written again.
    """
    record = StudyRecord(ref.case_id, source=str(ref.folder))
    todo, unvouched = plan_studies([ref], outputs, run, {ref.case_id: record})
    if not todo:
        return record
    start = time.perf_counter()
    job = None
    try:
        study = load_study(ref, outputs.max_voxels)
        record.timings["read"] = time.perf_counter() - start
        job, error = _segment(engine, study, None, record, outputs, None)
        del study
    except Exception as exc:  # reported with the study's name, as by run_studies
        error = exc
    if job is not None:
        _publish(job, outputs, record, run)
    else:
        record.status, record.error = "failed", f"{type(error).__name__}: {error}"
        log.error("%s: FAILED: %s", ref.case_id, error)
        if ref.case_id in unvouched:
            _withdraw(outputs, ref)
    record.peak_rss_mb = round(peak_rss_mb(), 1)
    return record


def _withdraw(outputs: OutputOptions, ref: StudyRef) -> None:
    """Remove the outputs (and record) of a study that failed.

    Called when its outputs could not all be written, or when it failed before writing and no
    record vouched for its earlier outputs: left in place, they would be taken for this run's
    result (a mask without its maps, a mask of changed inputs, of another engine, or of
    another study that once had this case id).
    """
    case_id = ref.case_id
    outputs.record_path(case_id).unlink(missing_ok=True)
    removed, kept = [], []
    for path in outputs.paths(case_id, ref.is_dicom).values():
        try:
            if path.exists():
                path.unlink()
                removed.append(path.name)
        except OSError as exc:
            kept.append(f"{path} ({exc.strerror or exc})")
    if removed:
        log.warning("%s: the study failed, so its outputs were removed: %s", case_id, ", ".join(removed))
    if kept:
        log.error("%s: the study failed and these outputs could not be removed; do not use them: %s",
                  case_id, "; ".join(kept))


def write_outputs(job: WriteJob, outputs: OutputOptions) -> dict[str, Path]:
    """Write the mask (and probabilities, QC picture) of one study; returns the paths."""
    paths = outputs.paths(job.ref.case_id, job.ref.is_dicom)
    if "mask" in paths:
        write_mask(job.mask, job.geometry, paths["mask"], protected=job.protected)
    if "seg" in paths:
        from .io.dicom_seg import write_dicom_seg

        write_dicom_seg(job.mask, job.dicom_source, paths["seg"], protected=job.protected)
    if outputs.save_probs:
        for key in ("p3d", "cue"):
            paths[key].parent.mkdir(parents=True, exist_ok=True)
            write_image_atomic(image_from_array(getattr(job, key), job.geometry), paths[key])
    if outputs.qc:
        from .qc import coronal_view, qc_picture, write_png

        paths["qc"].parent.mkdir(parents=True, exist_ok=True)
        write_png(paths["qc"], qc_picture(job.pet_mip, coronal_view(job.mask, job.geometry) > 0, job.cue_mip))
    return paths
