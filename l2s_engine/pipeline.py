"""One study through the whole pipeline on the host: arrays in, mask (and maps) out.

``Engine`` opens an engine directory once (manifest, one backend per fold and network) and
segments any number of studies given as arrays, so tests and benchmarks need no files.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .backends import Backend, BackendError, backend_class
from .geometry import Geometry
from .manifest import Manifest, read_manifest
from .planning import BODY_HU, BODY_SUV, body_mask, occupied_slices, plan_windows, undecided_slices
from .postprocess import RULES, fuse
from .precision import PrecisionError, parse_precision
from .preprocess import coronal_axes, to_coronal, intensity_window
from .resample import CT_ORDER, PET_ORDER, GridMap, grid_map
from .spec import FusionSpec
from .stages import run_loc2d, run_seg3d

PRECISIONS = ("fp32", "fp16", "bf16", "auto")
CPU_PRECISIONS = ("bf16", "auto")  # the openvino backend's: a bf16 CPU, per network


@dataclass(frozen=True)
class InferOptions:
    """How to run the networks and fuse their outputs (CLI flags map onto these).

    Attributes:
        backend: a name from ``backends.BACKENDS``.
        device: where the torch backend runs ("cpu", "cuda", "cuda:N"); None: "cpu".
        precision: "fp32" or "fp16" (which exported graphs run); for openvino "fp32", "bf16" or
            "auto" (bf16 per network where the CPU has bf16 units and the network passed the
            export's bf16 gate); or one per network, "loc2d=fp32,seg3d=bf16" (``precision``).
        cache_dir: base folder of compiled-model caches (openvino; None: ``~/.cache/l2s-engine``).
        low_memory: free each network's working memory after its stage (openvino keeps it: paper
            nets, small study, fp32: peak 4256 -> 2989 MiB, 6% slower; measured 2026-11-30).
        threads: backend CPU threads (None: the backend's default).
        batch_2d, batch_3d: coronal slices / windows per network call.
        tta: flip test-time augmentation (2 passes in 2D, left-right only; 8 in 3D).
        skip_air: leave out coronal slices and windows without a body voxel.
        full_cue: run the 2D net on every (body) slice. Otherwise the host pipeline, under the
            paper rule, runs the 3D net first and the 2D net only on the coronal slices where
            the cue can change the mask (``planning.undecided_slices``): the same mask, and a
            cue of 0 on the other slices. The components rule always computes the full cue;
            the GPU pipeline runs both nets side by side and always does.
        rule: fusion rule, "paper" or "components"; None: the engine's (its manifest's
            ``fusion.rule``, "paper" for every export so far).
        cue_threshold, low_threshold, high_threshold: override the manifest's thresholds.
    """

    backend: str = "onnxruntime"
    device: str | None = None
    precision: str = "fp32"
    threads: int | None = None
    batch_2d: int = 16
    batch_3d: int = 2
    tta: bool = False
    skip_air: bool = True
    full_cue: bool = False
    rule: str | None = None
    cue_threshold: float | None = None
    low_threshold: float | None = None
    high_threshold: float | None = None
    body_hu: float = BODY_HU
    body_suv: float = BODY_SUV
    cache_dir: Path | None = None
    low_memory: bool = False

    def __post_init__(self):
        chosen = set(parse_precision(self.precision).values())
        if self.backend != "openvino" and chosen & set(CPU_PRECISIONS):
            raise PrecisionError(f"--precision {self.precision}: bf16 and auto are the openvino backend's (CPU); "
                                 f"the {self.backend} backend runs fp32 or fp16")
        if self.backend != "openvino" and len(chosen) > 1:
            raise PrecisionError(f"--precision {self.precision}: one precision per network is the openvino "
                                 f"backend's; the {self.backend} backend runs both in one")
        if self.backend == "openvino" and "fp16" in chosen:
            raise PrecisionError("fp16 is the GPU's precision (tensorrt, torch on cuda); the openvino backend "
                                 "runs fp32, bf16 or auto")
        if self.rule is not None and self.rule not in RULES:
            raise BackendError(f"fusion rule must be one of {', '.join(RULES)}, got {self.rule!r}")
        if self.batch_2d < 1 or self.batch_3d < 1:
            raise BackendError(f"batch sizes must be >= 1, got 2D {self.batch_2d}, 3D {self.batch_3d}")

    def fusion(self, base: FusionSpec) -> FusionSpec:
        """The manifest's fusion thresholds with this run's overrides."""
        changes = {k: getattr(self, k) for k in ("cue_threshold", "low_threshold", "high_threshold")
                   if getattr(self, k) is not None}
        return dataclasses.replace(base, **changes)


@dataclass
class Segmentation:
    """The result of one study: arrays on the study's grid and where the time went."""

    mask: np.ndarray                      # uint8 0/1 (z, y, x)
    p3d: np.ndarray | None                # 3D probabilities, float32 (None: left on the GPU)
    cue: np.ndarray | None                # 2D cue, float32 (None: left on the GPU)
    timings: dict[str, float] = field(default_factory=dict)   # seconds per stage
    work: dict[str, int] = field(default_factory=dict)        # slices and windows run / planned
    spacing: dict = field(default_factory=dict)               # native and network grids (GridMap.describe)


class Engine:
    """An engine directory opened for inference with one backend.

    Args:
        engine_dir: output of ``l2s-export`` (its manifest is verified).
        options: backend, precision, batching, fusion.
    """

    def __init__(self, engine_dir: Path, options: InferOptions = InferOptions()):
        self.manifest: Manifest = read_manifest(engine_dir)
        self.spec = self.manifest.spec
        if options.rule is None:  # the engine's own rule, as its weights were exported
            options = dataclasses.replace(options, rule=self.spec.fusion.rule)
        self.options = options
        self.fusion = options.fusion(self.spec.fusion)
        cls = backend_class(options.backend)
        self.nets: dict[str, list[Backend]] = {}
        precision = parse_precision(options.precision)
        for role in ("loc2d", "seg3d"):
            files = cls.model_files(self.manifest, role, precision[role])
            if not files:
                raise BackendError(f"{engine_dir}: no {cls.format} model for {role} in the manifest (the "
                                   f"{options.backend} backend runs those at {precision[role]}); re-run l2s-export"
                                   + (" with openvino installed (pip install 'l2s-engine[openvino]')"
                                      if cls.format == "openvino" else ""))
            self.nets[role] = [cls.from_options(self.manifest.path(f), f, options) for f in files]

    @property
    def folds(self) -> int:
        return len(self.nets["seg3d"])

    def describe(self) -> dict:
        """The backend, its version, the model files and the engine directory's facts (for reports)."""
        first = self.nets["seg3d"][0]
        version = getattr(type(first), "version", None)
        return {"name": self.options.backend, "version": version() if version else None,
                "precision": self.options.precision, "device": self.options.device, "folds": self.folds, "engine_dir": str(self.manifest.directory),
                "preset": self.spec.preset, "fusion": dataclasses.asdict(self.fusion), "rule": self.options.rule,
                "network_spacing_zyx_mm": list(self.spec.spacing_zyx_mm),
                "cue": "on demand" if self.cue_on_demand else "full",
                "files": [n.path.name for nets in self.nets.values() for n in nets],
                "networks": self.networks(), **self.cpu(),
                "export": {k: v for k, v in self.manifest.info.items() if k != "weights"}}

    def cpu(self) -> dict:
        """The CPU's model, SIMD/matrix flags and bf16 unit (for reports beside the timings)."""
        from .cpuinfo import bf16_isa, reported_flags, this_cpu

        model, flags = this_cpu()
        isa = bf16_isa(flags)
        if self.options.backend == "openvino":
            from .backends.openvino import machine_bf16

            isa = machine_bf16()
        return {"cpu": model, "cpu_flags": reported_flags(flags), "cpu_bf16": isa}

    def networks(self) -> dict:
        """Per network, what ran: the precision of each fold's model and why, where the backend
        chooses it (openvino: fp32 or bf16 per network), and its compile time and cache."""
        asked = parse_precision(self.options.precision)
        return {role: [{"precision": asked[role], **n.describe()} for n in nets] for role, nets in self.nets.items()}

    def __enter__(self) -> Engine:
        for nets in self.nets.values():
            for net in nets:
                net.activate()
        return self

    def __exit__(self, *exc) -> None:
        for nets in self.nets.values():
            for net in nets:
                net.deactivate()

    def plan(self, pet_suv: np.ndarray, ct_hu: np.ndarray, geometry: Geometry) -> tuple:
        """(coronal slices to run or None for all, window plan, work counts) of one study.

        Raises:
            BackendError: PET and CT are not both on the geometry's grid.
        """
        self._check_grid(pet_suv, ct_hu, geometry)
        opts = self.options
        n_coronal = to_coronal(pet_suv, geometry).shape[0]
        slices, body = None, None
        if opts.skip_air:
            body = body_mask(pet_suv, ct_hu, opts.body_hu, opts.body_suv)
            slices = occupied_slices(to_coronal(body, geometry))
        plan = plan_windows(pet_suv.shape, self.spec.seg3d.patch, self.fusion.step_fraction, body)
        work = {"slices_run": n_coronal if slices is None else len(slices), "slices_total": n_coronal,
                "windows_run": len(plan.starts), "windows_total": len(plan.starts) + plan.skipped}
        return slices, plan, work

    def _progress(self, progress, work: dict):
        """Reset a tqdm-like bar to the study's network batches; returns its tick (or None)."""
        if progress is None:
            return None
        progress.reset(total=math.ceil(work["slices_run"] / self.options.batch_2d)
                       + self.folds * math.ceil(work["windows_run"] / self.options.batch_3d))
        return progress.update

    @property
    def cue_on_demand(self) -> bool:
        """Whether the 2D net runs after the 3D net, only where the cue decides (see InferOptions)."""
        return self.options.rule == "paper" and not self.options.full_cue

    def _undecided(self, p3d: np.ndarray, geometry: Geometry, slices, work: dict, progress,
                   grid: GridMap | None = None) -> np.ndarray:
        """The slices (of ``slices``; None: all) where the cue can change the mask; updates the
        work counts and the progress bar's total. With ``grid``, ``p3d`` is on the native grid
        and the slices returned are the network-grid slices its undecided slices are
        interpolated from."""
        needed = undecided_slices(to_coronal(p3d, geometry), self.fusion.low_threshold, self.fusion.high_threshold)
        if grid is not None and grid.resampled:
            needed = grid.network_sources(coronal_axes(geometry)[0], needed)
        if slices is not None:
            needed = np.intersect1d(needed, slices)
        batch = self.options.batch_2d
        if progress is not None:
            progress.total -= math.ceil(work["slices_run"] / batch) - math.ceil(len(needed) / batch)
            progress.refresh()
        work["slices_candidates"], work["slices_run"] = work["slices_run"], len(needed)
        return needed

    def stage(self, pet_suv: np.ndarray, ct_hu: np.ndarray) -> None:
        """Queue a study's upload ahead of ``segment`` (the GPU pipeline); the host pipeline has none."""
        return None

    def segment(self, pet_suv: np.ndarray, ct_hu: np.ndarray, geometry: Geometry,
                progress=None, staged=None) -> Segmentation:
        """Segment one study given as arrays on the PET grid (PET in SUV, CT in HU).

        At a spacing other than the networks' (``Spec.spacing_zyx_mm``), PET (Keys cubic) and
        CT (linear) are resampled to it first, both networks run on that grid, and the 3D
        probabilities and the cue come back (linear) before the fusion threshold: the mask,
        ``p3d`` and ``cue`` are always on the native grid. Timing ``resample``: both ways.

        Args:
            progress: a tqdm-like bar; reset to the number of network batches, then
                advanced after each.
            staged: what ``stage`` returned for this study (the host pipeline stages nothing).
        """
        spec, opts, times = self.spec, self.options, {}
        start = time.perf_counter()
        grid = grid_map(geometry, spec.spacing_zyx_mm)
        if grid.resampled:
            self._check_grid(pet_suv, ct_hu, geometry)
            pet_suv, ct_hu = grid.to_network(pet_suv, PET_ORDER), grid.to_network(ct_hu, CT_ORDER)
        native, geometry = geometry, grid.network
        times["resample"] = time.perf_counter() - start

        def back(volume):  # a network-grid map onto the native grid, timed as resampling
            start = time.perf_counter()
            volume = grid.to_native(volume)
            times["resample"] += time.perf_counter() - start
            return volume

        start = time.perf_counter()
        slices, plan, work = self.plan(pet_suv, ct_hu, geometry)
        pet_3d = intensity_window(pet_suv, *spec.seg3d.suv_window)
        # one volume fewer when both networks see the same PET window (both presets)
        same = tuple(spec.loc2d.suv_window) == tuple(spec.seg3d.suv_window)
        pet_2d = pet_3d if same else intensity_window(pet_suv, *spec.loc2d.suv_window)
        ct_3d = intensity_window(ct_hu, *spec.seg3d.ct_window)
        times["preprocess"] = time.perf_counter() - start
        tick = self._progress(progress, work)

        def loc2d(slices, p3d=None):
            start = time.perf_counter()
            if p3d is not None:  # on demand: choosing the slices is part of the 2D stage
                slices = self._undecided(p3d, native, slices, work, progress, grid)
            cue = run_loc2d(self.nets["loc2d"], pet_2d, geometry, spec.loc2d, slices, opts.batch_2d, opts.tta, tick)
            self._release("loc2d")
            times["2d"] = time.perf_counter() - start
            return cue

        def seg3d():
            start = time.perf_counter()
            p3d = run_seg3d(self.nets["seg3d"], pet_3d, ct_3d, plan, opts.batch_3d, opts.tta, tick=tick)
            self._release("seg3d")
            times["3d"] = time.perf_counter() - start
            return p3d

        if self.cue_on_demand:
            p3d = back(seg3d())
            cue = back(loc2d(slices, p3d))
        else:
            cue = back(loc2d(slices))
            p3d = back(seg3d())
        start = time.perf_counter()
        mask = fuse(opts.rule, p3d, cue, self.fusion)
        times["fusion"] = time.perf_counter() - start
        return Segmentation(mask, p3d, cue, times, work, grid.describe(times["resample"]))

    def _release(self, role: str) -> None:
        """With ``low_memory``, let a network's working memory go after its stage, so that the two
        stages' peaks do not add up (openvino holds each compiled network's buffers otherwise)."""
        if self.options.low_memory:
            for net in self.nets[role]:
                net.release_memory()

    @staticmethod
    def _check_grid(pet_suv: np.ndarray, ct_hu: np.ndarray, geometry: Geometry) -> None:
        if pet_suv.shape != geometry.shape or ct_hu.shape != geometry.shape:
            raise BackendError(f"PET {pet_suv.shape} and CT {ct_hu.shape} must both have the grid's shape "
                               f"{geometry.shape} (z, y, x); resample CT onto the PET grid first")
