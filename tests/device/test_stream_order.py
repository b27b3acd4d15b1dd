"""The GPU pipeline's stream order, checked on the CPU stand-in device (``host_device``).

The stand-in queues device work per stream, runs it only when the program forces it, in an
order that is not program order, and fails on any access of a buffer that another stream (or
the host) touched without an event in between. First the stand-in itself; then the device
pipeline, unmodified, under several draining orders; then the pipeline with each of its
synchronisation statements deleted in turn (found in ``cuda/engine.py`` by the syntax tree):
each deletion must make the run fail, with the stand-in's hazard check on, and, where the
deletion lets wrong data through, with it off too (the wrong masks and maps alone).
"""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from runtime.engines import fast_engine

import l2s_engine.cuda.engine as engine_module
from l2s_engine.phantoms import make_phantom
from l2s_engine.core import InferOptions
from l2s_engine.pipeline import HostEngine

from .host_device import DeviceArray, HostDevice
from .test_device_pipeline_host import check_timings, label_streams

# ---- the stand-in on its own -------------------------------------------------------------


def test_work_waits_until_forced_and_runs_out_of_program_order(host_kernels):
    device = HostDevice(host_kernels, trace=True)
    xp, k = device.xp, device.kernels
    a, b = device.stream(), device.stream()
    device.label(a=a, b=b)
    src = np.linspace(-5.0, 30.0, 1000, dtype=np.float32)
    with a:
        x = xp.asarray(src)
        y = xp.empty(x.shape, np.float32)
        k.normalise(x, 0.0, 20.0, y)
        done_a = a.record()
    with b:
        z = xp.zeros(x.shape, np.float32)
    assert device.executed == [] and device.pending() == {"a": 3, "b": 1}
    assert np.isnan(y.view(np.ndarray)).all()  # nothing ran: a fresh device buffer is garbage
    with b:
        b.wait_event(done_a)
        z += y
    with a:
        later = xp.zeros(3, np.float32)
    out = device.pinned(x.size, np.float32)
    device.download(z, out, b)
    assert ("b", "download") not in device.executed  # a copy back does not block: it is queued
    with pytest.raises(AssertionError, match=r"stream-order hazard: host .* reads page-locked float32\(1000,\) .* "
                                             r"written by download on b"):
        out.sum()  # the host reads the copy back before anything ordered it after the copy
    b.synchronize()
    # b's zeros were queued after a's work: they run first; a's work only as far as b's wait needs
    assert device.executed == [("b", "fill"), ("a", "upload"), ("a", "kernel normalise"), ("b", "add"),
                               ("b", "download")]
    np.testing.assert_array_equal(out, np.clip(src, 0.0, 20.0) * np.float32(0.1) - 1.0)
    assert device.pending() == {"a": 1} and np.isnan(later.view(np.ndarray)).all()  # nothing forces it
    with b:
        twice = z * np.float32(2.0)
    with a, pytest.raises(AssertionError, match=r"fill on a .* writes device float32\(1000,\).* which is read by "
                                                 r"multiply on b"):
        z.fill(8.0)  # a writes what b reads: nothing orders a after b
    assert twice.shape == z.shape


def test_a_read_across_streams_needs_an_event(host_kernels):
    device = HostDevice(host_kernels)
    xp, k = device.xp, device.kernels
    a, b = device.stream(), device.stream()
    device.label(stream_a=a, stream_b=b)
    with a:
        x = xp.asarray(np.ones(10, np.float32))
        y = xp.empty(10, np.float32)
        k.normalise(x, 0.0, 1.0, y)
    with b, pytest.raises(AssertionError, match=r"stream-order hazard: kernel normalise on stream_b .* reads "
                                                 r"device float32\(10,\) from .*test_stream_order.py.*, which was "
                                                 r"written by kernel normalise on stream_a"):
        k.normalise(y, 0.0, 1.0, xp.empty(10, np.float32))
    event = a.record()
    with b:
        b.wait_event(event)
        k.normalise(y, 0.0, 1.0, xp.empty(10, np.float32))  # ordered now


def test_a_write_after_a_read_on_another_stream_needs_an_event(host_kernels):
    device = HostDevice(host_kernels)
    xp, k = device.xp, device.kernels
    a, b = device.stream(), device.stream()
    with a:
        x = xp.zeros(10, np.float32)
    with b:
        b.wait_event(a.record())
        y = xp.empty(10, np.float32)
        k.normalise(x, 0.0, 1.0, y)  # b reads x
    with a, pytest.raises(AssertionError, match=r"fill on stream 1 .* writes device float32\(10,\).* which is read "
                                                 r"by kernel normalise on stream 2"):
        x.fill(3.0)
    with a:
        a.wait_event(b.record())
        x.fill(3.0)
        y.fill(1.0)  # a write after b's write, ordered by the event


def test_host_write_into_page_locked_memory_an_upload_still_reads(host_kernels):
    device = HostDevice(host_kernels)
    copy = device.stream()
    pinned = device.pinned(6, np.float32)
    np.copyto(pinned, np.arange(6, dtype=np.float32))
    on_device = device.upload(pinned, copy)
    ready = copy.record()
    with pytest.raises(AssertionError, match=r"host copyto .* writes page-locked float32\(6,\) .* which is read by "
                                             r"upload on stream 1"):
        np.copyto(pinned[:3], np.zeros(3, np.float32))
    with pytest.raises(AssertionError, match="host item assignment"):
        pinned[0] = 5.0
    ready.synchronize()
    np.copyto(pinned, np.full(6, 9.0, np.float32))  # the upload has read it
    out = device.pinned(6, np.float32)
    device.download(on_device, out, copy)
    copy.synchronize()
    np.testing.assert_array_equal(out, np.arange(6, dtype=np.float32))


def test_an_upload_reads_page_locked_memory_when_it_runs(host_kernels):
    """Without the hazard check, overwriting the page-locked source before the copy ran shows
    in the data: the copy reads the buffer when it runs, as the DMA does."""
    device = HostDevice(host_kernels, hazards=False)
    copy = device.stream()
    pinned = device.pinned(4, np.float32)
    np.copyto(pinned, np.ones(4, np.float32))
    on_device = device.upload(pinned, copy)
    np.copyto(pinned, np.full(4, 2.0, np.float32))
    out = device.pinned(4, np.float32)
    device.download(on_device, out, copy)
    copy.synchronize()
    np.testing.assert_array_equal(out, 2.0)
    pageable = np.ones(4, np.float32)  # from pageable memory CUDA stages the data at once
    on_device = device.upload(pageable, copy)
    pageable[:] = 3.0
    device.download(on_device, out, copy)
    copy.synchronize()
    np.testing.assert_array_equal(out, 1.0)


def test_elapsed_needs_completed_events(host_kernels):
    device = HostDevice(host_kernels)
    a = device.stream()
    start = a.record()
    with a:
        device.xp.zeros(1000, np.float32)
    end = a.record()
    with pytest.raises(AssertionError, match="cudaErrorNotReady"):
        device.elapsed(start, end)
    end.synchronize()
    assert device.elapsed(start, end) == pytest.approx(1e-6 + 1e-9 * 1000)


def test_array_work_is_queued_and_a_host_read_waits(host_kernels):
    device = HostDevice(host_kernels, trace=True)
    xp = device.xp
    a = device.stream()
    with a:
        x = xp.asarray(np.arange(12, dtype=np.float32).reshape(3, 4))
        y = np.flip(x, (1,)).copy()[:, 1:]  # a view of a queued copy
        assert isinstance(y, DeviceArray) and np.may_share_memory(y, y.base)
        z = (y.astype(np.float64) * 2.0 + x[:, :3]).sum(axis=1)
        z /= np.float64(3.0)
        m = z.mean()
        ravelled = x.T.reshape(-1)  # not a view: a queued copy
        assert device.executed == []
        assert float(m) == pytest.approx(np.mean((np.flip(np.arange(12.0).reshape(3, 4), 1)[:, 1:] * 2
                                                  + np.arange(12.0).reshape(3, 4)[:, :3]).sum(1) / 3))
        assert ravelled.tolist() == np.arange(12.0).reshape(3, 4).T.reshape(-1).tolist()
    with pytest.raises(TypeError, match="host numpy array"):
        x + np.ones((3, 4), np.float32)
    with pytest.raises(TypeError, match="host array"):
        device.kernels.normalise(np.ones(3, np.float32), 0.0, 1.0, xp.empty(3, np.float32))


# ---- the pipeline ------------------------------------------------------------------------

OPTIONS = InferOptions(batch_2d=5, batch_3d=3)
RESAMPLED = (10.0, 9.0, 7.0)  # a network spacing the tiny phantoms are resampled to


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    """Engines (native grid, resampled) and three tiny studies with the host pipeline's results."""
    tmp = tmp_path_factory.mktemp("stream-order")
    native, resampled = fast_engine(tmp / "native", spacing="tiny"), fast_engine(tmp / "resampled", spacing=RESAMPLED)
    phantoms = [make_phantom(i, seed=1000, size="tiny") for i in range(3)]
    refs = {}
    for name, engine_dir, cases in (("native", native, phantoms), ("resampled", resampled, phantoms[:1])):
        with HostEngine(engine_dir, InferOptions(full_cue=True)) as host:
            refs[name] = [host.segment(p.pet, p.ct, p.geometry) for p in cases]
    assert sum(int(r.mask.sum()) for r in refs["native"]) > 0 and refs["resampled"][0].mask.sum() > 0
    assert len({r.mask.tobytes() for r in refs["native"]}) == 3  # a study's result is its own
    return {"native": native, "resampled": resampled, "phantoms": phantoms, "refs": refs}


def check_result(got, ref, what: str) -> None:
    differing = int((got.mask != ref.mask).sum())
    assert differing <= 2, f"wrong mask of {what}: {differing} voxels differ"
    for name in ("cue", "p3d"):
        close = np.isclose(getattr(got, name), getattr(ref, name), rtol=1e-5, atol=1e-6)
        assert close.all(), f"wrong {name} of {what}: {int((~close).sum())} voxels differ"


class _Interrupted(Exception):
    pass


class _StopAfter:
    """A progress callback that raises on the n-th batch (the host, mid-study, between batches)."""

    def __init__(self, n: int):
        self.n = n

    def __call__(self, done: int, total: int) -> None:
        if done >= self.n:
            raise _Interrupted("interrupted")


def run_pipeline(engine_class, studies, device_for) -> None:
    """Three studies uploaded back to back (the first upload slot comes round again before its
    upload is used), then segmented in turn; then a study resampled on the device."""
    phantoms, refs = studies["phantoms"], studies["refs"]
    device = device_for()
    with engine_class(studies["native"], OPTIONS, keep_maps=True, device=device) as engine:
        label_streams(engine)
        uploads = [engine.upload(p.pet, p.ct) for p in phantoms]
        engine.stream_3d.synchronize()  # the engine's own upload (window weights) out of the way
        for i, (phantom, study, ref) in enumerate(zip(phantoms, uploads, refs["native"])):
            before = device.work(engine.stream_2d, engine.stream_3d)
            got = engine.segment(phantom.pet, phantom.ct, phantom.geometry, uploaded=study)
            check_result(got, ref, f"study {i}")
            check_timings(got.timings, "paper", device.work(engine.stream_2d, engine.stream_3d) - before)
    device = device_for()
    with engine_class(studies["native"], OPTIONS, keep_maps=True, device=device) as engine:
        label_streams(engine)
        with pytest.raises(_Interrupted):  # say, Ctrl-C while the batches are being queued
            engine.segment(phantoms[1].pet, phantoms[1].ct, phantoms[1].geometry, progress=_StopAfter(3))
        left = {k: v for k, v in device.pending().items() if k in ("stream_2d", "stream_3d")}
        assert not left, f"work still queued after segment raised: {left}"
    device = device_for()
    with engine_class(studies["resampled"], OPTIONS, keep_maps=True, device=device) as engine:
        label_streams(engine)
        phantom = phantoms[0]
        got = engine.segment(phantom.pet, phantom.ct, phantom.geometry)
        assert got.spacing["resampled"]
        check_result(got, refs["resampled"][0], "the resampled study")
        check_timings(got.timings, "paper")


@pytest.mark.parametrize("order,seed", [("deferred", None), ("deferred", 0), ("deferred", 1), ("deferred", 2),
                                        ("program", None)])
def test_pipeline_keeps_stream_order(studies, host_kernels, order, seed):
    run_pipeline(engine_module.DeviceEngine, studies, lambda: HostDevice(host_kernels, order=order, seed=seed))


# ---- each synchronisation point deleted --------------------------------------------------

SOURCE = Path(engine_module.__file__)
SYNC_CALLS = ("wait_event", "synchronize")

# every wait_event / synchronize statement of cuda/engine.py (function: statement) -> what its
# deletion does: (with the hazard check, without it); a pattern of the failure, or None: passes
EXPECTED = {
    # the copy stream's upload has read an upload slot before the host refills it
    "upload: slot.done.synchronize()": (r"stream-order hazard: host copyto \(engine.py:\d+ in upload[^)]*\) writes "
                                       r"page-locked float32.* read by upload on copy", r"wrong mask of study 0"),
    # stream A and stream B read the study after its upload (or, resampled, after the resampling)
    "_loc2d: stream.wait_event(uploaded.ready)": (r"stream-order hazard: kernel normalise on stream_2d "
                                                r"\(engine.py:\d+ in _loc2d[^)]*\) reads device float32.* uploaded at "
                                                r"engine.py:\d+ in upload.* written by upload on copy",
                                                r"wrong (cue|mask) of study 1"),
    "_seg3d: stream.wait_event(uploaded.ready)": (r"stream-order hazard: kernel normalise on stream_3d "
                                                r"\(engine.py:\d+ in _seg3d[^)]*\) reads .* written by upload on copy",
                                                r"wrong (p3d|mask) of study 1"),
    "_to_network: stream.wait_event(uploaded.ready)": (r"stream-order hazard: kernel resample_cubic on stream_3d "
                                                     r"\(engine.py:\d+ in _to_network[^)]*\) reads .* written by upload "
                                                     r"on copy", r"wrong (mask|cue|p3d) of the resampled study"),
    # B waits for A's first event: the 3D stage's span lies inside the device time
    "_segment: b.wait_event(t.events['begin'])": (r"the streams' work .* does not fit in the device time",
                                                 r"the streams' work .* does not fit in the device time"),
    # B's fusion reads the cue A scattered
    "_segment: b.wait_event(t.events['2d_end'])": (r"stream-order hazard: kernel fuse_threshold on stream_3d "
                                                  r"\(engine.py:\d+ in _fuse .* reads device float32.* which was "
                                                  r"written by kernel scatter_slices on stream_2d",
                                                  r"cudaErrorNotReady"),
    # the events are read after the last one completed
    "_segment: t.events['end'].synchronize()": ("cudaErrorNotReady", "cudaErrorNotReady"),
    # the host reads the resampling's events, and plans on the resampled PET and CT copied back
    # (page-locked, not blocking), only once the copies have landed
    "_to_network: t.events['copied'].synchronize()": ("cudaErrorNotReady", "cudaErrorNotReady"),
    # an error mid-study: both streams run out before the study's buffers can be reused
    "_settle: stream.synchronize()": ("work still queued after segment raised", "work still queued after segment raised"),
}


class _SyncPoints(ast.NodeVisitor):
    def __init__(self):
        self.function, self.found = None, {}

    def visit_FunctionDef(self, node):
        outer, self.function = self.function, node.name
        self.generic_visit(node)
        self.function = outer

    def visit_Expr(self, node):
        call = node.value
        if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr in SYNC_CALLS:
            key = f"{self.function}: {ast.unparse(node)}"
            assert key not in self.found, f"{key} twice in one function: name them apart"
            self.found[key] = node
        self.generic_visit(node)


def sync_points(source: str) -> dict[str, ast.Expr]:
    visitor = _SyncPoints()
    visitor.visit(ast.parse(source))
    return visitor.found


def without(source: str, node: ast.Expr) -> str:
    """``source`` with the statement ``node`` replaced by ``pass`` (line numbers kept)."""
    lines = source.splitlines(keepends=True)
    first = lines[node.lineno - 1]
    assert not first[:node.col_offset].strip(), f"not alone on its line: {first!r}"
    rest = lines[node.end_lineno - 1][node.end_col_offset:].strip()
    assert not rest or rest.startswith("#"), f"not alone on its line: {lines[node.end_lineno - 1]!r}"
    lines[node.lineno - 1] = " " * node.col_offset + "pass  # deleted by test_stream_order\n"
    for i in range(node.lineno, node.end_lineno):
        lines[i] = "\n"
    return "".join(lines)


def load_engine(source: str, tag: str):
    """``source`` as a fresh module of the package (its relative imports work)."""
    name = f"l2s_engine.cuda._engine_mutant_{re.sub(r'[^0-9a-zA-Z]+', '_', tag).strip('_')}"
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(name, loader=None))
    module.__package__ = "l2s_engine.cuda"
    sys.modules[name] = module  # dataclasses look their module up while the class is made
    try:
        exec(compile(source, str(SOURCE), "exec"), module.__dict__)
    finally:
        del sys.modules[name]
    return module


def test_every_sync_point_is_known():
    """A synchronisation statement added to (or gone from) engine.py must be classified here."""
    found = sync_points(SOURCE.read_text())
    assert set(found) == set(EXPECTED), (sorted(set(found) - set(EXPECTED)), sorted(set(EXPECTED) - set(found)))


def test_unchanged_source_loads_as_a_working_module(studies, host_kernels):
    module = load_engine(SOURCE.read_text(), "unchanged")
    run_pipeline(module.DeviceEngine, studies, lambda: HostDevice(host_kernels))


@pytest.mark.parametrize("hazards", [True, False], ids=["hazard-check", "data-only"])
@pytest.mark.parametrize("point", sorted(EXPECTED))
def test_deleting_a_sync_point_fails(studies, host_kernels, point, hazards):
    source = SOURCE.read_text()
    points = sync_points(source)
    assert point in points, f"{point} is no longer in {SOURCE.name}"
    module = load_engine(without(source, points[point]), point)
    expected = EXPECTED[point][0 if hazards else 1]
    run = lambda: run_pipeline(module.DeviceEngine, studies, lambda: HostDevice(host_kernels, hazards=hazards))  # noqa: E731
    if expected is None:
        run()
        return
    with pytest.raises(AssertionError) as failure:
        run()
    assert re.search(expected, str(failure.value), re.S), str(failure.value)
