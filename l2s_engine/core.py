"""The engine core that both executors share: the run's options and their one resolution, the
model set from one manifest read, the study plan (slices, windows, their batches) and the result.

The executors (``pipeline.HostEngine``: numpy and a CPU backend; ``cuda.engine.DeviceEngine``:
two CUDA streams and kernels.cu) subclass ``EngineCore`` and add only ``upload`` and
``segment``; ``executors.open_engine`` chooses between them from the resolved ``Run``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .backends import Backend, BackendError, backend_class
from .geometry import Geometry
from .manifest import Manifest, read_manifest
from .planning import BODY_HU, BODY_SUV, WindowPlan, batches, body_mask, occupied_slices, plan_windows
from .postprocess import PAPER, RULES
from .precision import PrecisionError, parse_precision
from .preprocess import to_coronal
from .spec import FusionSpec

PRECISIONS = ("fp32", "fp16", "bf16", "auto")
CPU_PRECISIONS = ("bf16", "auto")  # the openvino backend's: a bf16 CPU, per network
DEFAULT_PRECISION = {"tensorrt": "fp16", "openvino": "auto"}  # other backends: fp32
EXECUTORS = ("host", "device")


def cuda_index(device: str | None) -> int | None:
    """The CUDA device number of "cuda" (0) or "cuda:N"; None for the CPU ("cpu" or None).

    Raises:
        BackendError: another device name.
    """
    name = device or "cpu"
    if name == "cpu":
        return None
    kind, sep, number = name.partition(":")
    if kind == "cuda" and (not sep or number.isdigit()):
        return int(number or 0)
    raise BackendError(f"--device {name}: give cpu, cuda or cuda:N (N a GPU number)")


@dataclass(frozen=True)
class InferOptions:
    """How to run the networks and fuse their outputs (CLI flags map onto these).

    What a run asks; ``resolve_run`` turns it into what runs (``Run``).

    Attributes:
        backend: a name from ``backends.BACKENDS``, or "auto" (``backends.auto.choose``).
        device: "cpu", "cuda" or "cuda:N"; None: the backend's ("cuda" for tensorrt, else "cpu").
            On cuda the device executor runs (two CUDA streams, kernels.cu).
        precision: "fp32" or "fp16" (which exported graphs run); for openvino "fp32", "bf16" or
            "auto" (bf16 per network where the CPU has bf16 units and the network passed the
            export's bf16 gate); or one per network, "loc2d=fp32,seg3d=bf16" (``precision``);
            None: the backend's default (``DEFAULT_PRECISION``).
        cache_dir: base folder of compiled-model caches (openvino; None: ``~/.cache/l2s-engine``).
        low_memory: free each network's working memory after its stage (openvino keeps it: paper
            nets, small study, fp32: peak 4256 -> 2989 MiB, 6% slower; measured 2026-11-30). The
            host executor's; the device executor refuses it.
        threads: backend CPU threads (None: the backend's default).
        batch_2d, batch_3d: coronal slices / windows per network call.
        tta: flip test-time augmentation (2 passes in 2D, left-right only; 8 in 3D).
        skip_air: leave out coronal slices and windows without a body voxel.
        full_cue: run the 2D net on every (body) slice. Otherwise the host executor, under the
            paper rule, runs the 3D net first and the 2D net only on the coronal slices where
            the cue can change the mask (``planning.undecided_slices``): the same mask, and a
            cue of 0 on the other slices. The components rule always computes the full cue; so
            does the device executor, which runs both nets side by side (``resolve_run``).
        rule: fusion rule, "paper" or "components"; None: the engine's (its manifest's
            ``fusion.rule``, "paper" for every export so far).
        cue_threshold, low_threshold, high_threshold: override the manifest's thresholds.
    """

    backend: str = "onnxruntime"
    device: str | None = None
    precision: str | None = "fp32"
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
        if self.rule is not None and self.rule not in RULES:
            raise BackendError(f"fusion rule must be one of {', '.join(RULES)}, got {self.rule!r}")
        if self.batch_2d < 1 or self.batch_3d < 1:
            raise BackendError(f"batch sizes must be >= 1, got 2D {self.batch_2d}, 3D {self.batch_3d}")
        cuda_index(self.device)
        if self.backend == "auto" or self.precision is None:
            return  # checked once resolved
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

    def fusion(self, base: FusionSpec) -> FusionSpec:
        """The manifest's fusion thresholds with this run's overrides."""
        changes = {k: getattr(self, k) for k in ("cue_threshold", "low_threshold", "high_threshold")
                   if getattr(self, k) is not None}
        return dataclasses.replace(base, **changes)


@dataclass(frozen=True)
class Run:
    """A run as it is carried out: every choice made, each in one place (``resolve_run``).

    Attributes:
        options: the options with backend, device, precision, rule and full cue decided.
        executor: "host" (numpy + a CPU backend) or "device" (CUDA streams + kernels.cu).
        keep_maps: whether the 3D probabilities and the cue reach the host (the device executor
            copies them back only when asked or when the fusion rule needs them there).
        chosen_by: why ``--backend auto`` chose the backend (None: the backend was named).
        notes: the choices made for the run rather than asked for, each with its reason.
    """

    options: InferOptions
    executor: str
    keep_maps: bool
    chosen_by: str | None = None
    notes: tuple[str, ...] = ()

    @property
    def full_cue(self) -> bool:
        return self.options.full_cue

    def describe(self) -> dict:
        """What report.json records of the resolution."""
        o = self.options
        return {"backend": o.backend, "device": o.device, "precision": o.precision, "executor": self.executor,
                "maps_kept": self.keep_maps, "full_cue": o.full_cue, "rule": o.rule,
                "backend_chosen_by": self.chosen_by, "notes": list(self.notes)}


def resolve_run(options: InferOptions, manifest: Manifest, keep_maps: bool = False, executor: str | None = None,
                probe=None) -> Run:
    """Decide the run: backend, device, precision, executor, maps kept and full cue.

    The only place these are decided. ``--backend auto`` probes the machine (``probe``: a
    ``backends.auto.Probe``, or None to look) and picks from the manifest's files.

    Args:
        options: what the run asks (backend may be "auto", precision and rule None).
        manifest: the engine directory's manifest (read once, by the caller).
        keep_maps: the caller wants the 3D probabilities and the cue (``--save-probs``).
        executor: force "host" or "device" (tests, references); None: the device executor
            exactly when the run is on a GPU (tensorrt, or device cuda).

    Raises:
        BackendError, PrecisionError: an option the chosen executor cannot honour, named.
    """
    backend, device, precision, chosen_by, notes = options.backend, options.device, options.precision, None, []
    if backend == "auto":
        from .backends.auto import choose, probe_machine

        choice = choose(manifest, probe if probe is not None else probe_machine())
        backend, device, precision = choice.backend, device or choice.device, precision or choice.precision
        chosen_by = choice.reason
    precision = precision or DEFAULT_PRECISION.get(backend, "fp32")
    device = device or ("cuda" if backend == "tensorrt" else "cpu")
    if executor is None:
        executor = "device" if backend == "tensorrt" or cuda_index(device) is not None else "host"
    if executor not in EXECUTORS:
        raise BackendError(f"executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    if options.cache_dir is not None and backend != "openvino":
        notes.append(f"--cache-dir: only the openvino backend keeps compiled models; {backend} does not use it")
    if options.threads is not None and backend == "tensorrt":
        notes.append("--threads: TensorRT runs the networks on the GPU; no backend CPU threads to set")
    rule = options.rule or manifest.spec.fusion.rule
    full_cue = options.full_cue or rule != PAPER
    if executor == "device":
        if options.low_memory:
            raise BackendError("--low-memory frees the CPU backends' working memory between the two stages; the GPU "
                               "pipeline runs both stages at once on two streams: leave it out with --device cuda")
        if not full_cue:
            notes.append("full cue: the GPU pipeline runs the 2D and 3D nets side by side, so the 2D net runs on every "
                         "body slice (the host pipeline's cue on demand needs the 3D result first)")
        full_cue = True
        keep_maps = keep_maps or rule != PAPER  # the other rules fuse on the host
    else:
        keep_maps = True  # the host pipeline's maps are on the host already
    resolved = dataclasses.replace(options, backend=backend, device=device, precision=precision, rule=rule,
                                   full_cue=full_cue)
    return Run(resolved, executor, keep_maps, chosen_by, tuple(notes))


@dataclass
class Segmentation:
    """The result of one study: arrays on the study's grid and where the time went."""

    mask: np.ndarray                      # uint8 0/1 (z, y, x)
    p3d: np.ndarray | None                # 3D probabilities, float32 (None: left on the GPU)
    cue: np.ndarray | None                # 2D cue, float32 (None: left on the GPU)
    timings: dict[str, float] = field(default_factory=dict)   # seconds per stage
    work: dict[str, int] = field(default_factory=dict)        # slices and windows run / planned
    spacing: dict = field(default_factory=dict)               # native and network grids (GridMap.describe)


@dataclass
class StudyPlan:
    """The network calls of one study on the network grid: both executors run this schedule.

    Attributes:
        slices: the coronal slices the 2D net runs on (all, or those with body), in order.
        windows: the 3D windows (``planning.plan_windows``).
        batch_2d, batch_3d: slices / windows per network call.
        folds: networks per stage (fold ensemble).
        work: slices and windows run and planned (report.json's ``work``).
    """

    slices: np.ndarray
    windows: WindowPlan
    batch_2d: int
    batch_3d: int
    folds: int
    work: dict[str, int]

    def slice_batches(self) -> list[np.ndarray]:
        """The 2D net's calls: ``slices`` in groups of ``batch_2d`` (every fold runs each)."""
        return list(batches(self.slices, self.batch_2d))

    def window_batches(self) -> list[list[tuple[int, int, int]]]:
        """The 3D net's calls per fold: the window starts in groups of ``batch_3d``."""
        return list(batches(list(self.windows.starts), self.batch_3d))

    def network_calls(self) -> int:
        """Batches the progress counts: 2D batches (folds within one) plus 3D batches of every fold."""
        return -(-len(self.slices) // self.batch_2d) + self.folds * -(-len(self.windows.starts) // self.batch_3d)

    def narrow_slices(self, slices: np.ndarray) -> None:
        """Run the 2D net only on ``slices`` (cue on demand: chosen after the 3D stage)."""
        self.work["slices_candidates"], self.work["slices_run"] = self.work["slices_run"], len(slices)
        self.slices = np.asarray(slices)


class Progress:
    """Network batches of one study, reported as ``callback(done, total)`` after each batch
    and whenever the total changes (the cue on demand narrows the 2D stage after the 3D)."""

    def __init__(self, callback: Callable[[int, int], object] | None, plan: StudyPlan):
        self.callback, self.plan, self.done = callback, plan, 0
        self._report()

    def tick(self) -> None:
        self.done += 1
        self._report()

    def replan(self) -> None:
        self._report()

    def _report(self) -> None:
        if self.callback is not None:
            self.callback(self.done, self.plan.network_calls())


class EngineCore:
    """An engine directory opened for a run: the manifest (read once), one backend per fold
    and network, the fusion thresholds and the study plan. The executors add ``upload`` and
    ``segment``.

    Args:
        source: the engine directory (its manifest is read and verified) or its ``Manifest``.
        run: the resolved run, or options to resolve for this executor.
    """

    executor = "host"  # which executor a subclass is (resolve_run's name for it)

    def __init__(self, source: Path | Manifest, run: Run | InferOptions = InferOptions(), keep_maps: bool = False):
        self.manifest: Manifest = source if isinstance(source, Manifest) else read_manifest(source)
        if isinstance(run, InferOptions):
            run = resolve_run(run, self.manifest, keep_maps=keep_maps, executor=self.executor)
        elif run.executor != self.executor:
            raise BackendError(f"a run resolved for the {run.executor} executor cannot open the {self.executor} one")
        self.run, self.options, self.spec = run, run.options, self.manifest.spec
        self.fusion = self.options.fusion(self.spec.fusion)
        self.nets: dict[str, list[Backend]] = self._open_nets()

    def _open_nets(self) -> dict[str, list[Backend]]:
        options = self.options
        cls = backend_class(options.backend)
        precision = parse_precision(options.precision)
        nets = {}
        for role in ("loc2d", "seg3d"):
            files = cls.model_files(self.manifest, role, precision[role])
            if not files:
                raise BackendError(f"{self.manifest.directory}: no {cls.format} model for {role} in the manifest (the "
                                   f"{options.backend} backend runs those at {precision[role]}); re-run l2s-export"
                                   + (" with openvino installed (pip install 'l2s-engine[openvino]')"
                                      if cls.format == "openvino" else ""))
            nets[role] = [cls.from_options(self.manifest.path(f), f, options) for f in files]
        return nets

    @property
    def folds(self) -> int:
        return len(self.nets["seg3d"])

    @property
    def cue_on_demand(self) -> bool:
        """Whether the 2D net runs after the 3D net, only where the cue decides (see InferOptions)."""
        return not self.run.full_cue

    def describe(self) -> dict:
        """The run, the backend, its version, the model files and the engine directory's facts (for reports)."""
        first = self.nets["seg3d"][0]
        version = getattr(type(first), "version", None)
        return {"name": self.options.backend, "version": version() if version else None,
                "precision": self.options.precision, "device": self.options.device, "folds": self.folds,
                "engine_dir": str(self.manifest.directory), "preset": self.spec.preset,
                "fusion": dataclasses.asdict(self.fusion), "rule": self.options.rule,
                "network_spacing_zyx_mm": list(self.spec.spacing_zyx_mm),
                "cue": "on demand" if self.cue_on_demand else "full", "run": self.run.describe(),
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

    def __enter__(self):
        for nets in self.nets.values():
            for net in nets:
                net.activate()
        return self

    def __exit__(self, *exc) -> None:
        for nets in self.nets.values():
            for net in nets:
                net.deactivate()

    def plan(self, pet_suv: np.ndarray, ct_hu: np.ndarray, geometry: Geometry) -> StudyPlan:
        """The network calls of one study given on the networks' grid.

        Raises:
            BackendError: PET and CT are not both on the geometry's grid.
        """
        self.check_grid(pet_suv, ct_hu, geometry)
        opts = self.options
        n_coronal = to_coronal(pet_suv, geometry).shape[0]
        slices, body = np.arange(n_coronal), None
        if opts.skip_air:
            body = body_mask(pet_suv, ct_hu, opts.body_hu, opts.body_suv)
            slices = occupied_slices(to_coronal(body, geometry))
        windows = plan_windows(pet_suv.shape, self.spec.seg3d.patch, self.fusion.step_fraction, body)
        work = {"slices_run": len(slices), "slices_total": n_coronal,
                "windows_run": len(windows.starts), "windows_total": len(windows.starts) + windows.skipped}
        return StudyPlan(np.asarray(slices), windows, opts.batch_2d, opts.batch_3d, self.folds, work)

    def upload(self, pet_suv: np.ndarray, ct_hu: np.ndarray):
        """Queue a study's copy to the device ahead of ``segment`` (None where there is no device)."""
        return None

    def segment(self, pet_suv: np.ndarray, ct_hu: np.ndarray, geometry: Geometry,
                progress: Callable[[int, int], object] | None = None, uploaded=None) -> Segmentation:
        raise NotImplementedError

    @staticmethod
    def check_grid(pet_suv: np.ndarray, ct_hu: np.ndarray, geometry: Geometry) -> None:
        """Refuse PET and CT that are not both on ``geometry``'s grid."""
        if pet_suv.shape != geometry.shape or ct_hu.shape != geometry.shape:
            raise BackendError(f"PET {pet_suv.shape} and CT {ct_hu.shape} must both have the grid's shape "
                               f"{geometry.shape} (z, y, x); resample CT onto the PET grid first")
