"""The host executor: one study through the whole pipeline with numpy and a CPU backend.

``HostEngine`` opens an engine directory once (``core.EngineCore``: manifest, one backend per
fold and network) and segments any number of studies given as arrays, so tests and
benchmarks need no files.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from .core import EngineCore, Progress, Segmentation, StudyPlan
from .geometry import Geometry
from .planning import undecided_slices
from .postprocess import fuse
from .preprocess import coronal_axes, intensity_window, to_coronal
from .resample import CT_ORDER, PET_ORDER, GridMap, grid_map
from .stages import run_loc2d, run_seg3d


class HostEngine(EngineCore):
    """An engine directory opened for inference on the host (numpy and a CPU backend).

    Args: as ``core.EngineCore``.
    """

    executor = "host"

    def segment(self, pet_suv: np.ndarray, ct_hu: np.ndarray, geometry: Geometry,
                progress: Callable[[int, int], object] | None = None, uploaded=None) -> Segmentation:
        """Segment one study given as arrays on the PET grid (PET in SUV, CT in HU).

        At a spacing other than the networks' (``Spec.spacing_zyx_mm``), PET (Keys cubic) and
        CT (linear) are resampled to it first, both networks run on that grid, and the 3D
        probabilities and the cue come back (linear) before the fusion threshold: the mask,
        ``p3d`` and ``cue`` are always on the native grid. Timing ``resample``: both ways.

        Args:
            progress: ``progress(done, total)`` network batches, after each batch and when
                the total changes.
            uploaded: what ``upload`` returned for this study (the host executor uploads nothing).
        """
        spec, opts, times = self.spec, self.options, {}
        start = time.perf_counter()
        grid = grid_map(geometry, spec.spacing_zyx_mm)
        if grid.resampled:
            self.check_grid(pet_suv, ct_hu, geometry)
            pet_suv, ct_hu = grid.to_network(pet_suv, PET_ORDER), grid.to_network(ct_hu, CT_ORDER)
        native, geometry = geometry, grid.network
        times["resample"] = time.perf_counter() - start

        def back(volume):  # a network-grid map onto the native grid, timed as resampling
            start = time.perf_counter()
            volume = grid.to_native(volume)
            times["resample"] += time.perf_counter() - start
            return volume

        start = time.perf_counter()
        plan = self.plan(pet_suv, ct_hu, geometry)
        pet_3d = intensity_window(pet_suv, *spec.seg3d.suv_window)
        # one volume fewer when both networks see the same PET window (both presets)
        same = tuple(spec.loc2d.suv_window) == tuple(spec.seg3d.suv_window)
        pet_2d = pet_3d if same else intensity_window(pet_suv, *spec.loc2d.suv_window)
        ct_3d = intensity_window(ct_hu, *spec.seg3d.ct_window)
        times["preprocess"] = time.perf_counter() - start
        counter = Progress(progress, plan)

        def loc2d(p3d=None):
            start = time.perf_counter()
            if p3d is not None:  # on demand: choosing the slices is part of the 2D stage
                plan.narrow_slices(self._undecided(p3d, native, plan, grid))
                counter.replan()
            cue = run_loc2d(self.nets["loc2d"], pet_2d, geometry, spec.loc2d, plan.slice_batches(), opts.tta,
                            counter.tick)
            self._release("loc2d")
            times["2d"] = time.perf_counter() - start
            return cue

        def seg3d():
            start = time.perf_counter()
            p3d = run_seg3d(self.nets["seg3d"], pet_3d, ct_3d, plan.windows, plan.window_batches(), opts.tta,
                            tick=counter.tick)
            self._release("seg3d")
            times["3d"] = time.perf_counter() - start
            return p3d

        if self.cue_on_demand:
            p3d = back(seg3d())
            cue = back(loc2d(p3d))
        else:
            cue = back(loc2d())
            p3d = back(seg3d())
        start = time.perf_counter()
        mask = fuse(opts.rule, p3d, cue, self.fusion)
        times["fusion"] = time.perf_counter() - start
        return Segmentation(mask, p3d, cue, times, plan.work, grid.describe(times["resample"]))

    def _undecided(self, p3d: np.ndarray, geometry: Geometry, plan: StudyPlan, grid: GridMap) -> np.ndarray:
        """The planned slices where the cue can change the mask. ``p3d`` is on the native grid
        (``geometry``'s); where the networks run on another grid, the slices returned are the
        network-grid slices its undecided slices are interpolated from."""
        needed = undecided_slices(to_coronal(p3d, geometry), self.fusion.low_threshold, self.fusion.high_threshold)
        if grid.resampled:
            needed = grid.network_sources(coronal_axes(geometry)[0], needed)
        return np.intersect1d(needed, plan.slices)

    def _release(self, role: str) -> None:
        """With ``low_memory``, let a network's working memory go after its stage, so that the two
        stages' peaks do not add up (openvino holds each compiled network's buffers otherwise)."""
        if self.options.low_memory:
            for net in self.nets[role]:
                net.release_memory()
