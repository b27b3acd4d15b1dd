"""The GPU pipeline (DeviceEngine) run on the CPU stand-in device against the host pipeline.

Everything but the hardware is the GPU path's own code: the two-stage orchestration, the
staging, the slice and window index tables, the kernels (CPU build of kernels.cu), the
fold and TTA handling and the fusion. The host executor (``HostEngine``) is the reference.
"""

import dataclasses

import numpy as np
import pytest
from runtime.engines import fast_engine

from l2s_engine.cuda.engine import DeviceEngine
from l2s_engine.metrics import case_metrics
from l2s_engine.phantoms import make_phantom
from l2s_engine.core import InferOptions
from l2s_engine.pipeline import HostEngine

from .host_device import HostDevice


def label_streams(engine):
    """Name the engine's streams in the stand-in device's hazard messages."""
    engine.device.label(copy=engine.copy_stream, stream_2d=engine.stream_2d, stream_3d=engine.stream_3d)


def check_timings(timings, rule="paper", work=None):
    """The device timings as the engine's events bound them: B waits for A's ``begin`` before its
    first work and for A's ``2d_end`` before the fusion, so the 2D span, and B's 3D and fusion
    spans (one after the other on B), lie inside ``device`` (``begin`` to ``end``); so does all the
    work of the two streams (``work``: the stand-in's modelled seconds of it, where known)."""
    t, eps = timings, 1e-9
    if work is not None:
        assert 0.0 < work <= t["device"] + eps, f"the streams' work ({work:.6f} s) does not fit in the device time: {t}"
    fusion = t["fusion"] if rule == "paper" else 0.0  # other rules add the host's fusion time
    assert 0.0 < t["2d"] <= t["device"] + eps, f"the 2D span does not fit in the device time: {t}"
    assert 0.0 < t["3d"] and fusion >= 0.0 and t["3d"] + fusion <= t["device"] + eps, \
        f"stream B's 3D and fusion spans do not fit in the device time: {t}"
    if rule == "paper":
        assert t["overlap"] == pytest.approx(max(0.0, t["2d"] + t["3d"] + fusion - t["device"]), abs=eps), t


def compare(engine_dir, options, phantom, kernels, keep_maps=True):
    # the GPU pipeline computes the whole cue: so does its reference
    device = HostDevice(kernels)  # deferred, adversarial order, hazards checked
    with HostEngine(engine_dir, dataclasses.replace(options, full_cue=True)) as host, \
            DeviceEngine(engine_dir, options, keep_maps=keep_maps, device=device) as engine:
        label_streams(engine)
        ref = host.segment(phantom.pet, phantom.ct, phantom.geometry)
        engine.stream_3d.synchronize()  # the engine's own upload (window weights) out of the way
        before = device.work(engine.stream_2d, engine.stream_3d)
        got = engine.segment(phantom.pet, phantom.ct, phantom.geometry)
        work = device.work(engine.stream_2d, engine.stream_3d) - before
    assert got.work == ref.work
    differs = got.mask != ref.mask
    assert int(differs.sum()) <= 2, int(differs.sum())
    if options.rule in (None, "paper"):  # one rule, p > t: only where exp's rounding meets a threshold
        f = host.fusion
        t = np.where(ref.cue > f.cue_threshold, f.low_threshold, f.high_threshold)
        assert (np.abs(ref.p3d[differs] - t[differs]) < 1e-6).all(), ref.p3d[differs]
    m = case_metrics(got.mask, ref.mask, 1.0, phantom.case_id)
    assert ref.mask.sum() == 0 or m.dice >= 0.999
    if keep_maps:
        np.testing.assert_allclose(got.cue, ref.cue, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(got.p3d, ref.p3d, rtol=1e-5, atol=1e-6)
    else:
        assert got.p3d is None and got.cue is None
    # the streams' work lies between the events on the network grid (resampling runs on B before)
    check_timings(got.timings, options.rule, None if got.spacing["resampled"] else work)
    return ref, got


@pytest.mark.parametrize("folds,tta,skip_air,rule", [(1, False, True, "paper"), (2, True, True, "paper"),
                                                    (3, False, False, "paper"), (1, False, True, "components")])
def test_device_pipeline_equals_host_pipeline(tmp_path, host_kernels, folds, tta, skip_air, rule):
    engine_dir = fast_engine(tmp_path / "engine", folds=folds)
    phantom = make_phantom(0, seed=1000, size="small")
    options = InferOptions(tta=tta, skip_air=skip_air, rule=rule, batch_2d=5, batch_3d=3)
    ref, got = compare(engine_dir, options, phantom, host_kernels)
    if rule == "paper":
        assert ref.mask.sum() > 0  # the comparison saw lesions
    else:  # the components rule runs on the host, on maps copied back
        assert got.p3d is not None and got.p3d.max() > 0.1


@pytest.mark.parametrize("folds,keep_maps,spacing", [(1, True, (5.0, 3.5, 6.3)), (2, True, (9.0, 7.0, 4.2)),
                                                    (1, False, (3.05, 8.4, 4.2))])
def test_device_pipeline_resamples_like_the_host(tmp_path, host_kernels, folds, keep_maps, spacing):
    """A study at another spacing than the networks': resampled on the device (kernels.cu),
    run on the network grid, maps back before the threshold; the host pipeline is the reference."""
    engine_dir = fast_engine(tmp_path / "engine", folds=folds, spacing=spacing)
    phantom = make_phantom(0, seed=1000, size="small")  # 6.1 x 4.2 x 4.2 mm
    ref, got = compare(engine_dir, InferOptions(batch_2d=7), phantom, host_kernels, keep_maps=keep_maps)
    assert ref.mask.sum() > 0 and got.mask.shape == phantom.pet.shape
    assert got.spacing["resampled"] and got.spacing["network_shape"] == ref.spacing["network_shape"]
    assert got.timings["resample"] >= 0.0 and got.timings["fusion"] >= 0.0


def test_device_pipeline_mask_only(tmp_path, host_kernels):
    compare(fast_engine(tmp_path / "engine"), InferOptions(), make_phantom(2, seed=1000, size="small"),
            host_kernels, keep_maps=False)


def test_device_pipeline_on_the_demo_networks(demo_engine, host_kernels):
    ref, _ = compare(demo_engine, InferOptions(), make_phantom(0, seed=1000, size="small"), host_kernels)
    assert ref.mask.sum() > 0


def test_uploaded_study_is_used_and_slots_alternate(tmp_path, host_kernels):
    engine_dir = fast_engine(tmp_path / "engine")
    a, b = make_phantom(0, seed=1000, size="small"), make_phantom(1, seed=1000, size="small")
    device = HostDevice(host_kernels)
    with HostEngine(engine_dir) as host, DeviceEngine(engine_dir, device=device) as engine:
        uploaded_a, uploaded_b = engine.upload(a.pet, a.ct), engine.upload(b.pet, b.ct)
        assert engine.slots[0].pet is not engine.slots[1].pet
        uploads = device.uploads
        got_b = engine.segment(b.pet, b.ct, b.geometry, uploaded=uploaded_b)
        got_a = engine.segment(a.pet, a.ct, a.geometry, uploaded=uploaded_a)
        assert device.uploads == uploads  # nothing uploaded again
        np.testing.assert_array_equal(got_a.mask, host.segment(a.pet, a.ct, a.geometry).mask)
        np.testing.assert_array_equal(got_b.mask, host.segment(b.pet, b.ct, b.geometry).mask)


def test_host_only_backend_is_refused_without_a_device(tmp_path):
    from l2s_engine.backends import BackendError

    with pytest.raises(BackendError, match="cannot run the GPU pipeline"):
        DeviceEngine(fast_engine(tmp_path / "engine"))
