"""One study through the pipeline on the GPU: two streams, device-resident from upload to mask.

Data flow (DESIGN.md): PET and CT are copied once, from page-locked host memory, on a copy
stream (``upload``; the scheduler's reader thread uploads the next study while this one runs).
Stream A normalises the PET, resizes and crops the coronal slices, runs the 2D batches and
scatters their probabilities into the cue volume; stream B normalises PET and CT, gathers
the windows, runs the 3D batches and accumulates Gaussian-weighted logits and weights. The
host enqueues A's and B's batches alternately, so both streams hold work from the start.
An event joins A into B; one kernel blends and thresholds; only the mask (and, when asked,
the probability maps) comes back, into page-locked memory without blocking the stream, and
the host waits once for all of it. The study's plan (slices, windows and their batches) is
``core.EngineCore.plan``'s, as in the host executor.

Buffers: the window weights and resampling tables are uploaded once per engine; volumes
and batches come from CuPy's stream-ordered memory pool, so a study reuses the previous
study's memory; two page-locked upload slots alternate between studies.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..backends import BackendError
from ..core import EngineCore, InferOptions, Progress, Run, Segmentation, StudyPlan, cuda_index
from ..ensemble import LOC2D_TTA_AXES, SEG3D_TTA_AXES, flip_sets, mean_logits, mean_probability
from ..geometry import Geometry
from ..manifest import Manifest
from ..postprocess import PAPER, fuse
from ..preprocess import slice_context, to_coronal
from ..resample import CT_ORDER, PET_ORDER, GridMap, grid_map
from ..tiling import gaussian_weights

FILL = -1.0  # normalised air, where a window overhangs the volume (as the host path)

log = logging.getLogger(__name__)


@dataclass
class Uploaded:
    """A study's PET (SUV) and CT (HU) on the device, ready once ``ready`` has completed."""

    pet: object
    ct: object
    ready: object
    seconds: float = 0.0  # host time of the upload (copy into page-locked memory, enqueue)


@dataclass
class _Slot:
    """A page-locked upload buffer pair and the event of its last upload."""

    pet: np.ndarray | None = None
    ct: np.ndarray | None = None
    done: object = None


@dataclass
class _Timing:
    events: dict = field(default_factory=dict)

    def mark(self, device, name: str, stream) -> None:
        event = device.event()
        event.record(stream)
        self.events[name] = event


class DeviceEngine(EngineCore):
    """An engine directory opened on a GPU (tensorrt or torch backend): the device executor.

    Args:
        source, run, keep_maps: as ``core.EngineCore``; the backend must run on the device.
            ``keep_maps``: also copy the 3D probabilities and the cue back (``--save-probs``;
            ``resolve_run`` adds it where the fusion rule runs on the host).
        device: the device to run on (default: ``CudaDevice`` of the run's device).
    """

    executor = "device"

    def __init__(self, source: Path | Manifest, run: Run | InferOptions = InferOptions(), keep_maps: bool = False,
                 device=None):
        super().__init__(source, run, keep_maps)
        for nets in self.nets.values():
            if not type(nets[0]).device_capable and device is None:
                raise BackendError(f"the {self.options.backend} backend cannot run the GPU pipeline; use tensorrt or "
                                   "torch with --device cuda")
        if device is None:
            from .device import CudaDevice

            device = CudaDevice(cuda_index(self.options.device) or 0)
        self.device, self.kernels, self.xp = device, device.kernels, device.xp
        self.copy_stream, self.stream_2d, self.stream_3d = device.stream(), device.stream(), device.stream()
        with self.stream_3d:
            self.weights = self.xp.asarray(gaussian_weights(self.spec.seg3d.patch))
        self.slots = [_Slot(), _Slot()]
        self.next_slot = 0

    def __enter__(self) -> DeviceEngine:
        super().__enter__()
        # each plan's context for its stream now: the first study's timings hold no set-up
        for role, stream in (("loc2d", self.stream_2d), ("seg3d", self.stream_3d)):
            for net in self.nets[role]:
                net.prepare(stream)
        return self

    def describe(self) -> dict:
        info = super().describe()
        info.update(pipeline="gpu (two streams)", gpu=getattr(self.device, "name", "?"), kernels=self.kernels.source)
        return info

    # ---- upload ------------------------------------------------------------------------------

    def upload(self, pet_suv: np.ndarray, ct_hu: np.ndarray) -> Uploaded:
        """Queue the upload of one study (float32 SUV and HU) on the copy stream.

        Safe to call from another thread (the reader) while the previous study runs.
        """
        start = time.perf_counter()
        self.device.activate()
        slot = self.slots[self.next_slot]
        self.next_slot ^= 1
        if slot.done is not None:
            slot.done.synchronize()  # its previous upload has left the buffers
        n = pet_suv.size
        if slot.pet is None or slot.pet.size < n:
            slot.pet, slot.ct = self.device.pinned(n, np.float32), self.device.pinned(n, np.float32)
        pet_host, ct_host = slot.pet[:n].reshape(pet_suv.shape), slot.ct[:n].reshape(ct_hu.shape)
        np.copyto(pet_host, pet_suv, casting="unsafe")
        np.copyto(ct_host, ct_hu, casting="unsafe")
        pet = self.device.upload(pet_host, self.copy_stream)
        ct = self.device.upload(ct_host, self.copy_stream)
        ready = self.device.event()
        ready.record(self.copy_stream)
        slot.done = ready
        return Uploaded(pet, ct, ready, time.perf_counter() - start)

    # ---- the two stages as batch generators ------------------------------------------------

    def _loc2d(self, uploaded: Uploaded, geometry: Geometry, plan: StudyPlan, cue, stream, tick):
        """Stream A: normalise, then per batch resize/crop -> 2D nets -> scatter into ``cue``."""
        spec, k, xp = self.spec.loc2d, self.kernels, self.xp
        with stream:
            stream.wait_event(uploaded.ready)
            norm = xp.empty(uploaded.pet.shape, np.float32)
            k.normalise(uploaded.pet, *spec.suv_window, norm)
        coronal, cue_coronal = to_coronal(norm, geometry), to_coronal(cue, geometry)
        context = slice_context(coronal.shape[0], plan.slices, spec.in_slices).astype(np.int32)
        with stream:
            context_dev, index_dev = xp.asarray(context), xp.asarray(plan.slices.astype(np.int32))
        r0, r1, c0, c1 = spec.crop
        flips = flip_sets(LOC2D_TTA_AXES, self.options.tta)
        runs = [self.device.runner(net, stream) for net in self.nets["loc2d"]]

        def add_sigmoid(logits, probs):
            k.add_sigmoid(xp.ascontiguousarray(logits), probs)

        b0 = 0
        for group in plan.slice_batches():
            b1 = b0 + len(group)
            with stream:
                x = xp.empty(((b1 - b0) * spec.in_slices, r1 - r0, c1 - c0), np.float32)
                k.resize_slices(coronal, context_dev[b0:b1].reshape(-1), spec.resize, spec.crop, x)
                x = x.reshape(b1 - b0, spec.in_slices, r1 - r0, c1 - c0)
                probs = mean_probability(runs, x, flips, add_sigmoid, xp.zeros((b1 - b0, r1 - r0, c1 - c0), np.float32))
                k.scatter_slices(probs, spec.resize, spec.crop, index_dev[b0:b1], cue_coronal)
            b0 = b1
            tick()
            yield

    def _seg3d(self, uploaded: Uploaded, plan: StudyPlan, acc, wsum, psum, stream, tick):
        """Stream B: normalise, weight sum, then per fold and batch gather -> 3D net ->
        weighted accumulate (per fold into ``psum`` when several)."""
        spec, k, xp = self.spec.seg3d, self.kernels, self.xp
        windows = plan.windows
        with stream:
            stream.wait_event(uploaded.ready)
            pet, ct = xp.empty(uploaded.pet.shape, np.float32), xp.empty(uploaded.ct.shape, np.float32)
            k.normalise(uploaded.pet, *spec.suv_window, pet)
            k.normalise(uploaded.ct, *spec.ct_window, ct)
            corners = [windows.corner(start) for start in windows.starts]
            corners_dev = xp.asarray(np.array(corners, np.int32).reshape(-1, 3))
            for corner in corners:
                k.accumulate_window(wsum, None, self.weights, corner)
        flips = flip_sets(SEG3D_TTA_AXES, self.options.tta)
        nets, window_batches = self.nets["seg3d"], plan.window_batches()
        for fold, net in enumerate(nets):
            run = self.device.runner(net, stream)
            if fold:
                with stream:
                    acc.fill(0)
            b0 = 0
            for group in window_batches:
                b1 = b0 + len(group)
                with stream:
                    x = xp.empty((b1 - b0, 2, *windows.patch), np.float32)
                    k.gather_windows(pet, ct, corners_dev[b0:b1], windows.patch, FILL, x)
                    logits = xp.ascontiguousarray(mean_logits(run, x, flips)[:, 0])
                    for i in range(b1 - b0):
                        k.accumulate_window(acc, logits[i], self.weights, corners[b0 + i])
                b0 = b1
                tick()
                yield
            if len(nets) > 1:
                with stream:
                    k.add_probability(acc, wsum, psum)

    # ---- one study ---------------------------------------------------------------------------

    def segment(self, pet_suv: np.ndarray, ct_hu: np.ndarray, geometry: Geometry, progress=None,
                uploaded: Uploaded | None = None) -> Segmentation:
        """Segment one study (arrays on the PET grid; ``uploaded``: its upload, if queued earlier).

        At a spacing other than the networks', the uploaded PET (Keys cubic) and CT (linear) are
        resampled to it on the device (and copied back for the host's planning), both stages
        run on that grid, and the 3D probabilities and the cue come back (linear kernels)
        before the threshold, as in the host executor.

        Args:
            progress: ``progress(done, total)`` network batches, after each batch is queued.

        Timings: ``preprocess`` (host planning and upload), ``resample`` (device time of the
        resampling kernels, both ways), ``2d``, ``3d`` and ``fusion`` (device times of each
        stream's work, from CUDA events; ``fusion`` includes the copies back), ``device`` (first
        kernel to mask on the host) and ``overlap`` (2d + 3d + fusion - device: the time the two
        streams ran at once).
        """
        try:
            return self._segment(pet_suv, ct_hu, geometry, progress, uploaded)
        except BaseException:
            # queued work may still read the study's buffers: they return to the memory pool
            # (and may be handed to the next study's upload) only once both streams are done
            self._settle()
            raise

    def _settle(self) -> None:
        """Wait until both work streams have run everything queued on them (an error path).

        A device that fails here too is logged, not raised: the error that led here is the one to report.
        """
        for stream in (self.stream_2d, self.stream_3d):
            try:
                stream.synchronize()
            except Exception:
                log.debug("synchronising a stream after an error failed too", exc_info=True)

    def _segment(self, pet_suv: np.ndarray, ct_hu: np.ndarray, geometry: Geometry, progress,
                 uploaded: Uploaded | None) -> Segmentation:
        start = time.perf_counter()
        grid, times = grid_map(geometry, self.spec.spacing_zyx_mm), {"resample": 0.0}
        if grid.resampled:
            uploaded = self.upload(pet_suv, ct_hu) if uploaded is None else uploaded
            uploaded, pet_suv, ct_hu, times["resample"] = self._to_network(uploaded, grid)
        geometry = grid.network  # the grid the networks run on (the native one when nothing is resampled)
        plan = self.plan(pet_suv, ct_hu, geometry)
        if uploaded is None:
            uploaded = self.upload(pet_suv, ct_hu)
        times["preprocess"] = time.perf_counter() - start - times["resample"]
        counter = Progress(progress, plan)
        xp, a, b, t = self.xp, self.stream_2d, self.stream_3d, _Timing()
        folds = self.folds
        t.mark(self.device, "begin", a)
        with b:
            b.wait_event(t.events["begin"])
            acc, wsum = xp.zeros(geometry.shape, np.float32), xp.zeros(geometry.shape, np.float32)
            psum = xp.zeros(geometry.shape, np.float32) if folds > 1 else None
        with a:
            cue = xp.zeros(geometry.shape, np.float32)
        t.mark(self.device, "3d_begin", b)
        stages = {"2d": (self._loc2d(uploaded, geometry, plan, cue, a, counter.tick), a),
                  "3d": (self._seg3d(uploaded, plan, acc, wsum, psum, b, counter.tick), b)}
        while stages:  # enqueue the two streams' batches alternately
            for name, (batches, stream) in list(stages.items()):
                if next(batches, StopIteration) is StopIteration:
                    del stages[name]
                    t.mark(self.device, f"{name}_end", stream)
        b.wait_event(t.events["2d_end"])
        t.mark(self.device, "fusion_begin", b)
        if grid.resampled:
            mask, p3d, cue_host = self._fuse_native(acc, wsum, psum, cue, folds, b, grid, t)
        else:
            mask, p3d, cue_host = self._fuse(acc, wsum, psum, cue, folds, b)
        t.mark(self.device, "end", b)
        t.events["end"].synchronize()  # the one wait: the mask (and maps) are in page-locked memory
        elapsed = self.device.elapsed
        times["2d"] = elapsed(t.events["begin"], t.events["2d_end"])
        times["3d"] = elapsed(t.events["3d_begin"], t.events["3d_end"])
        times["fusion"] = elapsed(t.events["fusion_begin"], t.events["end"])
        if grid.resampled:  # the maps' way back is resampling, not fusion
            back = elapsed(t.events["back_begin"], t.events["back_end"])
            times["resample"] += back
            times["fusion"] -= back
        times["device"] = elapsed(t.events["begin"], t.events["end"])
        times["overlap"] = max(0.0, times["2d"] + times["3d"] + times["fusion"] - times["device"])
        if self.options.rule != PAPER:  # the other rules are the host's (resolve_run keeps the maps)
            host_start = time.perf_counter()
            mask = fuse(self.options.rule, p3d, cue_host, self.fusion)
            times["fusion"] += time.perf_counter() - host_start
        return Segmentation(mask, p3d, cue_host, times, plan.work, grid.describe(times["resample"]))

    def _to_network(self, uploaded: Uploaded, grid: GridMap) -> tuple:
        """(the upload on the network grid, its PET and CT on the host for planning, device
        seconds): the resampling kernels on stream B, then the copies back (waited for)."""
        k, xp, stream, t = self.kernels, self.xp, self.stream_3d, _Timing()
        shape = grid.network.shape
        with stream:
            stream.wait_event(uploaded.ready)
            t.mark(self.device, "begin", stream)
            pet, ct = xp.empty(shape, np.float32), xp.empty(shape, np.float32)
            k.resample(uploaded.pet, k.grid_tables(grid, "to_network", PET_ORDER), PET_ORDER, pet)
            k.resample(uploaded.ct, k.grid_tables(grid, "to_network", CT_ORDER), CT_ORDER, ct)
            t.mark(self.device, "end", stream)
            pet_host, ct_host = self._host_buffer(shape, np.float32), self._host_buffer(shape, np.float32)
            self.device.download(pet, pet_host, stream)
            self.device.download(ct, ct_host, stream)
            t.mark(self.device, "copied", stream)
        t.events["copied"].synchronize()
        seconds = self.device.elapsed(t.events["begin"], t.events["end"])
        return Uploaded(pet, ct, t.events["end"], uploaded.seconds), pet_host, ct_host, seconds

    def _fuse_native(self, acc, wsum, psum, cue, folds: int, stream, grid: GridMap, t: _Timing):
        """Blend on the network grid, bring the probabilities and the cue back onto the native
        grid (linear, events ``back_begin``/``back_end``), then threshold there; copies back."""
        xp, k, f = self.xp, self.kernels, self.fusion
        shape = grid.native.shape
        with stream:
            if folds == 1:
                p = xp.zeros(acc.shape, np.float32)
                k.add_probability(acc, wsum, p)  # sigmoid(acc / wsum), 0 where no window reached
            else:  # the fold mean in place (the network-grid mask it also makes is not used)
                p = psum
                k.threshold_mean(psum, cue, xp.empty(acc.shape, np.uint8), folds, f.cue_threshold,
                                 f.low_threshold, f.high_threshold)
            t.mark(self.device, "back_begin", stream)
            tables = k.grid_tables(grid, "to_native", "linear")
            p_native, cue_native = xp.empty(shape, np.float32), xp.empty(shape, np.float32)
            k.resample(p, tables, "linear", p_native)
            k.resample(cue, tables, "linear", cue_native)
            t.mark(self.device, "back_end", stream)
            mask = xp.empty(shape, np.uint8)
            k.threshold_mean(p_native, cue_native, mask, 1, f.cue_threshold, f.low_threshold, f.high_threshold)
            return self._download(mask, p_native, cue_native, stream)

    def _fuse(self, acc, wsum, psum, cue, folds: int, stream):
        """The fused blend + threshold on ``stream``, then the copies back (queued)."""
        xp, k, f = self.xp, self.kernels, self.fusion
        shape = acc.shape
        with stream:
            mask = xp.empty(shape, np.uint8)
            if folds == 1:
                p = xp.empty(shape, np.float32) if self.run.keep_maps else None
                k.fuse_threshold(acc, wsum, cue, p, mask, f.cue_threshold, f.low_threshold, f.high_threshold)
            else:
                p = psum
                k.threshold_mean(psum, cue, mask, folds, f.cue_threshold, f.low_threshold, f.high_threshold)
            return self._download(mask, p, cue, stream)

    def _download(self, mask, p, cue, stream):
        """The mask, and with ``keep_maps`` the 3D probabilities and the cue, queued for copying
        into page-locked host memory on ``stream`` (valid once ``stream`` has run that far)."""
        mask_host = self._host_buffer(mask.shape, np.uint8)
        self.device.download(mask, mask_host, stream)
        p_host = cue_host = None
        if self.run.keep_maps:
            p_host, cue_host = self._host_buffer(mask.shape, np.float32), self._host_buffer(mask.shape, np.float32)
            self.device.download(p, p_host, stream)
            self.device.download(cue, cue_host, stream)
        return mask_host, p_host, cue_host

    def _host_buffer(self, shape: tuple, dtype) -> np.ndarray:
        """A page-locked host array (CuPy's pinned pool: a study reuses the memory of one whose
        outputs are written), so the copies back run without blocking the stream."""
        return self.device.pinned(int(np.prod(shape)), dtype).reshape(shape)
