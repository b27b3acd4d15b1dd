"""A stand-in device for the GPU pipeline on the CPU that keeps CUDA's ordering rules.

``HostDevice`` offers ``CudaDevice``'s interface over numpy and the CPU build of kernels.cu
(``HostKernels``), with streams that behave like CUDA streams rather than like the host:

Deferral. Every piece of device work is queued on a stream instead of run: kernel launches
(the kernels object the device hands out queues ``launch`` on the current stream), array
work through the device's ``xp`` (``zeros``, ``asarray``, ``ascontiguousarray``) and on its
arrays (``DeviceArray``: ufuncs and operators, ``fill``, ``copy``, ``astype``, copying
``reshape``/indexing, any other numpy function), network inference (``runner(net, stream)``,
into an output buffer kept per net and stream, as TensorRT's), uploads (``upload(host,
stream)``: from page-locked memory the source is read when the copy runs, as the DMA does)
and downloads. The current stream is CuPy's: thread-local, set by ``with stream:``; work
outside any stream goes to the null stream (independent of the engine's non-blocking
streams). Views (slicing, reshape, transpose, flip) are made at once, as CuPy does.

Draining. Queued work runs only when the program's ordering forces it: ``event.synchronize()``,
``stream.synchronize()``, a download (``CudaDevice.download`` is CuPy's blocking ``get``) or a
host read of a device scalar. The forced part is each stream's prefix up to the awaited item
plus, transitively, the prefixes its ``wait_event`` markers name; nothing else runs. Among the
streams that may run, the choice is adversarial: ``seed=None`` always runs the stream whose
next item was queued most recently (program order reversed wherever the streams allow it: a
stream that forgot to wait finds its producer's work not done), an integer seed picks at random
before every item. ``order="program"`` runs everything at once, in program order (the old
stand-in). Buffers from ``xp.empty`` are poisoned (NaN, 0x5A bytes), as CUDA gives garbage.

Hazards. Each queued item carries a vector clock (happens-before through stream order, the
host's enqueue order, ``wait_event`` and the host's synchronisations); each buffer remembers its
last writer and the readers since. An access not ordered after a conflicting one of another
stream or of the host (read after write, write after read or write) raises an AssertionError
naming both operations, their call sites and the buffer, when the second one is queued: so
the check does not depend on the draining order. What each kernel writes is read off
kernels.cu (pointer parameters without ``const``); every other array argument is a read.
The host is one more actor: its writes into page-locked buffers (``np.copyto``, item
assignment, ``fill``, ufuncs into them) are checked against uploads still reading them.
Buffers are tracked whole (a view is its base buffer).

Timing. The device has its own clock: each operation that runs advances it by 1 us plus 1 ns
per element it touches (deterministic, whatever the load of the machine), and an event's stamp
is that clock when its marker runs, so ``elapsed`` measures the order the drain chose;
``elapsed`` of an event that has not completed fails (cudaErrorNotReady).

Not modelled: CuPy's memory pool (every buffer is fresh memory, so the reuse of a freed block
by another stream is not seen), ``np.asarray`` of a device array on the host (a numpy
subclass cannot refuse it; CuPy raises), threads of the host against each other (one actor).
"""

from __future__ import annotations

import itertools
import os
import random
import re
import sys
import threading
import weakref
from collections import deque

import numpy as np

from l2s_engine.cuda.kernels import SOURCE, Kernels
from l2s_engine.stages import host_runner

HOST = 0  # the actor id of the host (all its threads)
_HERE = os.path.abspath(__file__)
_SKIPPED_FILES = (_HERE, os.path.abspath(sys.modules[Kernels.__module__].__file__))
_NUMPY_DIR = os.path.dirname(os.path.abspath(np.__file__))
_local = threading.local()


def kernel_writes(source: str) -> dict[str, tuple[int, frozenset[int]]]:
    """kernel name -> (parameter count, positions of the pointers it writes: no ``const``)."""
    found = {}
    for m in re.finditer(r'extern\s+"C"\s+__global__\s+void\s+(\w+)\s*\(([^)]*)\)', source):
        params = [p.strip() for p in m.group(2).split(",")]
        found[m.group(1)] = (len(params), frozenset(i for i, p in enumerate(params)
                                                    if "*" in p and not p.startswith("const")))
    return found


KERNEL_WRITES = kernel_writes(SOURCE.read_text())


def _site() -> str:
    """Where the pipeline asked for this (the first two frames outside this file, numpy and
    the kernel launchers)."""
    frame, found = sys._getframe(1), []
    while frame is not None and len(found) < 2:
        name = frame.f_code.co_filename
        if not (name in _SKIPPED_FILES or name.startswith(_NUMPY_DIR) or name.startswith("<")):
            found.append(f"{os.path.basename(name)}:{frame.f_lineno} in {frame.f_code.co_name}")
        frame = frame.f_back
    return " <- ".join(found) or "?"


def _root(array: np.ndarray) -> np.ndarray:
    while isinstance(array.base, np.ndarray):
        array = array.base
    return array


def _join(into: dict, other: dict) -> None:
    for actor, clock in other.items():
        if clock > into.get(actor, 0):
            into[actor] = clock


def _describe(array: np.ndarray) -> str:
    return f"{array.dtype}{tuple(array.shape)}"


def _current_streams() -> list:
    stack = getattr(_local, "streams", None)
    if stack is None:
        stack = _local.streams = []
    return stack


def _plain(obj):
    """Device and page-locked arrays as plain ndarrays (lists, tuples and dicts through)."""
    if isinstance(obj, (DeviceArray, PinnedArray)):
        return obj.view(np.ndarray)
    if isinstance(obj, (list, tuple)):
        return type(obj)(_plain(o) for o in obj)
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    return obj


def _ghost(obj):
    """Zeros in place of device arrays: to learn the shape and dtype of a result without
    reading data that may not be there yet."""
    if isinstance(obj, DeviceArray):
        return np.zeros(obj.shape, obj.dtype)
    if isinstance(obj, np.ndarray):
        raise TypeError(f"a host numpy array {_describe(obj)} in device work (CuPy refuses implicit host-to-device "
                        "transfers: use xp.asarray)")
    if isinstance(obj, (list, tuple)):
        return type(obj)(_ghost(o) for o in obj)
    if isinstance(obj, dict):
        return {k: _ghost(v) for k, v in obj.items()}
    return obj


def _device_arrays(obj) -> list:
    if isinstance(obj, DeviceArray):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [a for o in obj for a in _device_arrays(o)]
    if isinstance(obj, dict):
        return [a for o in obj.values() for a in _device_arrays(o)]
    return []


# numpy functions that only make views or read metadata: run at once, as CuPy does
_IMMEDIATE = {np.flip, np.fliplr, np.flipud, np.transpose, np.reshape, np.ravel, np.squeeze, np.expand_dims,
              np.moveaxis, np.swapaxes, np.broadcast_to, np.atleast_1d, np.atleast_2d, np.atleast_3d, np.shape,
              np.ndim, np.size, np.may_share_memory, np.shares_memory, np.result_type, np.can_cast,
              np.iscomplexobj, np.isrealobj}


class DeviceArray(np.ndarray):
    """An array in device memory: numpy storage, but all work on its data is queued on the
    current stream of the device that made it."""

    _device = None
    _label = None

    def __array_finalize__(self, obj):
        self._device = getattr(obj, "_device", None)

    def __repr__(self):  # never reads the data (it may not be there yet)
        return f"DeviceArray({_describe(self)})"

    __str__ = __repr__

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        return self._device._ufunc(ufunc, method, inputs, kwargs)

    def __array_function__(self, func, types, args, kwargs):
        if func in _IMMEDIATE:
            return super().__array_function__(func, types, args, kwargs)
        return self._device._function(func, args, kwargs)

    def __getitem__(self, key):
        keys = key if isinstance(key, tuple) else (key,)
        if any(isinstance(k, np.ndarray) and k.dtype == bool for k in keys):
            raise NotImplementedError("boolean indexing of a device array (its shape needs the data) is not modelled")
        if not any(isinstance(k, np.ndarray) for k in keys):
            result = super().__getitem__(key)
            if isinstance(result, np.ndarray) and np.may_share_memory(result, self):
                return result  # a view
        # fancy indexing copies; a single element is a 0-d device array in CuPy
        return self._device._function(np.ndarray.__getitem__, (self, key), {})

    def __setitem__(self, key, value):
        self._device._setitem(self, key, value)

    def fill(self, value):
        self._device._enqueue(self._device._current(), "fill", [], [self], lambda: np.ndarray.fill(_plain(self), value))

    def copy(self, order="C"):
        return self._device._copy(self, self.dtype, "copy")

    def astype(self, dtype, order="K", casting="unsafe", subok=True, copy=True):
        if not copy and np.dtype(dtype) == self.dtype:
            return self
        return self._device._copy(self, np.dtype(dtype), "astype")

    def reshape(self, *shape, order="C"):
        view = np.ndarray.reshape(self.view(np.ndarray), *shape, order=order)
        if np.may_share_memory(view, self):
            return super().reshape(*shape, order=order)
        contiguous = self._device._copy(self, self.dtype, "reshape (copy)")
        return np.ndarray.reshape(contiguous, *shape, order=order)

    def ravel(self, order="C"):
        return self.reshape(-1, order=order)

    def flatten(self, order="C"):
        return self._device._copy(self, self.dtype, "flatten").reshape(-1)

    def _host_value(self):
        return self._device._host_read(self)

    def item(self, *args):
        return self._host_value().item(*args)

    def tolist(self):
        return self._host_value().tolist()

    def __float__(self):
        return float(self._host_value())

    def __int__(self):
        return int(self._host_value())

    def __index__(self):
        return int(self._host_value())

    def __bool__(self):
        return bool(self._host_value())

    def _not_modelled(self, *args, **kwargs):
        raise NotImplementedError("this ndarray method computes at once; the stand-in device does not model it")

    argmax = argmin = argsort = sort = nonzero = dot = take = put = partition = argpartition = _not_modelled
    searchsorted = tobytes = tofile = _not_modelled


class PinnedArray(np.ndarray):
    """Page-locked host memory: the host's writes (and reads by numpy functions) are checked
    against uploads still reading it."""

    _device = None
    _label = None

    def __array_finalize__(self, obj):
        self._device = getattr(obj, "_device", None)

    def __array_function__(self, func, types, args, kwargs):
        if func in _IMMEDIATE:
            return super().__array_function__(func, types, args, kwargs)
        if any(issubclass(t, DeviceArray) for t in types):
            raise TypeError(f"np.{func.__name__} mixes device and host arrays (use device.upload/download)")
        dst = args[0] if func is np.copyto else kwargs.get("out")
        return self._device._host_op(func.__name__, _pinned(args, kwargs), _pinned(dst),
                                     lambda: func(*_plain(args), **_plain(kwargs)))

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if any(isinstance(x, DeviceArray) for x in inputs + tuple(kwargs.get("out", ()))):
            raise TypeError(f"{ufunc.__name__} mixes device and host arrays")
        result = self._device._host_op(ufunc.__name__, _pinned(inputs), _pinned(kwargs.get("out")),
                                       lambda: getattr(ufunc, method)(*_plain(inputs), **_plain(kwargs)))
        out = kwargs.get("out")
        return (out[0] if len(out) == 1 else out) if out is not None else result

    def __setitem__(self, key, value):
        self._device._host_op("item assignment", [], [self], lambda: np.ndarray.__setitem__(_plain(self), key,
                                                                                          _plain(value)))

    def fill(self, value):
        self._device._host_op("fill", [], [self], lambda: np.ndarray.fill(_plain(self), value))


def _pinned(*objs) -> list:
    found = []
    for obj in objs:
        if isinstance(obj, PinnedArray):
            found.append(obj)
        elif isinstance(obj, (list, tuple)):
            found += _pinned(*obj)
        elif isinstance(obj, dict):
            found += _pinned(*obj.values())
    return found


class _Item:
    """One queued thing on a stream: an operation, an event's marker or a wait."""

    __slots__ = ("kind", "seq", "order", "name", "fn", "event", "dep", "cost")

    def __init__(self, kind, seq, order, name, fn=None, event=None, dep=None, cost=0):
        self.kind, self.seq, self.order, self.name, self.fn, self.event, self.dep = kind, seq, order, name, fn, event, dep
        self.cost = cost  # elements touched


class _Buffer:
    """A tracked buffer: its last writer and the readers since, as (clock, description) per actor."""

    __slots__ = ("label", "writer", "reads")

    def __init__(self, label):
        self.label, self.writer, self.reads = label, None, {}


class HostStream:
    def __init__(self, device: HostDevice, ident: int, name: str):
        self.device, self.id, self.name = device, ident, name
        self.queue: deque[_Item] = deque()
        self.vc = {ident: 0}  # this stream's vector clock after its last queued item
        self.done = 0  # the clock of the last item that ran
        self.work = 0.0  # device seconds (modelled) of its operations that ran

    def __repr__(self):
        return f"<HostStream {self.name}>"

    def __enter__(self):
        _current_streams().append(self)
        return self

    def __exit__(self, *exc):
        _current_streams().pop()

    def wait_event(self, event: HostEvent) -> None:
        self.device._wait(self, event)

    def synchronize(self) -> None:
        with self.device.lock:
            self.device._synchronize(self, self.vc[self.id], self.vc)

    def record(self, event: HostEvent | None = None) -> HostEvent:
        event = event or self.device.event()
        event.record(self)
        return event


class HostEvent:
    def __init__(self, device: HostDevice):
        self.device = device
        self.stream: HostStream | None = None  # of the last record
        self.seq = 0
        self.vc: dict = {}
        self.stamp: float | None = None  # the device's clock when its marker ran

    def record(self, stream: HostStream | None = None) -> None:
        self.device._record(self, stream or self.device._current())

    def synchronize(self) -> None:
        assert self.stream is not None, "synchronized on an event that was never recorded"
        self.device._synchronize(self.stream, self.seq, self.vc)

    @property
    def done(self) -> bool:
        return self.stream is None or self.stream.done >= self.seq

    def query(self) -> bool:
        return self.done


class StreamKernels(Kernels):
    """The kernel launchers of ``Kernels`` whose launches are queued on the current stream."""

    def __init__(self, inner: Kernels, device: HostDevice):
        self.inner, self.device, self.xp = inner, device, device.xp
        self.source = inner.source

    def launch(self, name: str, n: int, args: tuple) -> None:
        count, writes = KERNEL_WRITES[name]
        assert len(args) == count, f"kernel {name} takes {count} arguments, launched with {len(args)}"
        reads, written = [], []
        for i, arg in enumerate(args):
            if isinstance(arg, np.ndarray):
                if not isinstance(arg, DeviceArray):
                    raise TypeError(f"kernel {name}: argument {i} is a host array {_describe(arg)}, not device memory")
                (written if i in writes else reads).append(arg)
        self.device._enqueue(self.device._current(), f"kernel {name}", reads, written,
                             lambda: self.inner.launch(name, n, _plain(args)), cost=n)


class HostXP:
    """The array module of the stand-in device (CuPy's role): allocation and copies queued on
    the current stream."""

    ndarray = DeviceArray

    def __init__(self, device: HostDevice):
        self._device = device

    def empty(self, shape, dtype=float, order="C"):
        return self._device._alloc(shape, dtype)

    def zeros(self, shape, dtype=float, order="C"):
        out = self._device._alloc(shape, dtype)
        out.fill(0)
        return out

    def empty_like(self, a, dtype=None):
        return self.empty(a.shape, dtype or a.dtype)

    def zeros_like(self, a, dtype=None):
        return self.zeros(a.shape, dtype or a.dtype)

    def asarray(self, a, dtype=None, order=None):
        if isinstance(a, DeviceArray):
            return a if dtype is None or np.dtype(dtype) == a.dtype else a.astype(dtype)
        return self._device._upload(a, self._device._current(), dtype)

    def ascontiguousarray(self, a, dtype=None):
        if isinstance(a, DeviceArray):
            if a.flags.c_contiguous and (dtype is None or np.dtype(dtype) == a.dtype):
                return a
            return self._device._copy(a, np.dtype(dtype or a.dtype), "ascontiguousarray")
        return self.asarray(np.ascontiguousarray(a, dtype))

    def __getattr__(self, name):
        attr = getattr(np, name)
        if isinstance(attr, (type, np.dtype)) or not callable(attr):
            return attr  # dtypes, constants
        raise AttributeError(f"the stand-in device's xp does not model xp.{name} (add it to HostXP)")


class HostDevice:
    """The ``CudaDevice`` interface over numpy and ``HostKernels``, with CUDA's stream order.

    Args:
        kernels: the CPU build of kernels.cu (``HostKernels``).
        order: "deferred" (queue, run only what is forced, adversarially) or "program" (run
            at once, in program order).
        seed: the draining choice: None runs the most recently queued work first, an
            integer picks at random (seeded).
        hazards: check every access against the happens-before order (AssertionError).
        trace: keep ``executed`` (stream name, operation) in the order they ran.
    """

    name = "CPU stand-in device"

    def __init__(self, kernels, order: str = "deferred", seed: int | None = None, hazards: bool = True,
                 trace: bool = False):
        assert order in ("deferred", "program"), order
        self.order, self.seed, self.hazards = order, seed, hazards
        self.rng = random.Random(seed)
        self.lock = threading.RLock()
        self.xp = HostXP(self)
        self.host_kernels = kernels
        self.kernels = StreamKernels(kernels, self)
        self.uploads = 0
        self.host_vc = {HOST: 0}
        self.streams: list[HostStream] = []
        self.null_stream = self._new_stream("null stream")
        self.buffers: dict[int, _Buffer] = {}
        self.outputs: dict = {}  # (net, stream) -> the net's output buffer on that stream
        self.counter = itertools.count(1)  # program order of everything queued
        self.executed: list[tuple[str, str]] | None = [] if trace else None
        self.clock = 0.0  # device seconds (modelled) of the work that ran

    # ---- the CudaDevice interface ----------------------------------------------------------

    def activate(self) -> None:
        return None

    def stream(self) -> HostStream:
        return self._new_stream(f"stream {len(self.streams)}")

    def event(self) -> HostEvent:
        return HostEvent(self)

    @staticmethod
    def elapsed(start: HostEvent, end: HostEvent) -> float:
        for event in (start, end):
            assert event.stream is not None, "elapsed time of an event that was never recorded"
            assert event.done, (f"elapsed time of an event that has not completed (cudaErrorNotReady): recorded on "
                                f"{event.stream.name}, which has not run that far")
        return end.stamp - start.stamp

    def pinned(self, n: int, dtype) -> np.ndarray:
        out = np.ndarray.__new__(PinnedArray, (n,), dtype)
        np.ndarray.fill(out, np.nan if out.dtype.kind == "f" else 0x5A)  # what a read before its copy sees
        out._device, out._label = self, f"page-locked {_describe(out)} from {_site()}"
        return out

    def upload(self, host: np.ndarray, stream: HostStream) -> DeviceArray:
        self.uploads += 1
        return self._upload(host, stream)

    def download(self, array: DeviceArray, out: np.ndarray, stream: HostStream) -> None:
        """CuPy's ``get(stream=, out=, blocking=False)``: queued on ``stream`` into page-locked
        ``out``; the host may read ``out`` only after something orders it after the copy."""
        assert isinstance(array, DeviceArray), f"download of a host array {_describe(array)}"
        assert isinstance(out, PinnedArray), f"a non-blocking copy back into pageable memory {_describe(out)}"
        assert array.shape == out.shape and array.dtype == out.dtype, (_describe(array), _describe(out))
        self._enqueue(stream, "download", [array], [out], lambda: np.copyto(_plain(out), _plain(array)))

    def runner(self, net, stream: HostStream):
        """``net.infer_device(x, stream)``: queued on ``stream``; the output lives in one buffer
        per net and stream, valid until the next call (as TensorRT's)."""
        run = host_runner(net)

        def infer(x):
            assert isinstance(x, DeviceArray) and x.flags.c_contiguous, "device input must be a C-contiguous device array"
            shape = self._output_shape(net, run, x)
            key = (id(net), stream.id)
            buffer = self.outputs.get(key, (None, None))[1]
            if buffer is None or buffer.shape[1:] != shape[1:] or buffer.shape[0] < shape[0]:
                buffer = self._alloc(shape, np.float32, f"output buffer of {net.path.name} on {stream.name}")
                self.outputs[key] = (net, buffer)  # the net kept alive with its key
            out = buffer[:shape[0]]

            def go():
                result = run(_plain(x))
                assert result.shape == out.shape, (result.shape, out.shape)
                np.copyto(_plain(out), result, casting="unsafe")

            self._enqueue(stream, f"inference {net.path.name}", [x], [out], go)
            return out

        return infer

    # ---- tests' helpers --------------------------------------------------------------------

    def label(self, **streams: HostStream) -> None:
        """Name streams in the messages (``label(copy=engine.copy_stream, ...)``)."""
        for name, stream in streams.items():
            stream.name = name

    def work(self, *streams: HostStream) -> float:
        """Device seconds (modelled) of the operations of ``streams`` that ran so far."""
        return sum(s.work for s in streams)

    def pending(self) -> dict[str, int]:
        """Items still queued per stream."""
        return {s.name: len(s.queue) for s in self.streams if s.queue}

    # ---- queueing --------------------------------------------------------------------------

    def _new_stream(self, name: str) -> HostStream:
        with self.lock:
            stream = HostStream(self, len(self.streams) + 1, name)
            self.streams.append(stream)
            return stream

    def _current(self) -> HostStream:
        stack = _current_streams()
        return stack[-1] if stack else self.null_stream

    def _tick(self, stream: HostStream) -> int:
        """The stream's next item: after everything the host did so far."""
        _join(stream.vc, self.host_vc)
        stream.vc[stream.id] += 1
        return stream.vc[stream.id]

    def _enqueue(self, stream: HostStream, name: str, reads, writes, fn, cost: int | None = None) -> None:
        with self.lock:
            seq = self._tick(stream)
            if self.hazards:
                self._access(stream.id, seq, stream.vc, f"{name} on {stream.name} ({_site()})", reads, writes)
            cost = sum(a.size for a in list(reads) + list(writes)) if cost is None else cost
            stream.queue.append(_Item("op", seq, next(self.counter), name, fn=fn, cost=cost))
            if self.order == "program":
                self._drain(stream, seq)

    def _record(self, event: HostEvent, stream: HostStream) -> None:
        with self.lock:
            seq = self._tick(stream)
            event.stream, event.seq, event.vc, event.stamp = stream, seq, dict(stream.vc), None
            stream.queue.append(_Item("mark", seq, next(self.counter), "event", event=event))
            if self.order == "program":
                self._drain(stream, seq)

    def _wait(self, stream: HostStream, event: HostEvent) -> None:
        assert event.stream is not None, "waited on an event that was never recorded"
        with self.lock:
            _join(stream.vc, event.vc)
            seq = self._tick(stream)
            stream.queue.append(_Item("wait", seq, next(self.counter), "wait", dep=(event.stream, event.seq)))
            if self.order == "program":
                self._drain(stream, seq)

    def _synchronize(self, stream: HostStream, seq: int, vc: dict) -> None:
        """The host waits for ``stream`` up to item ``seq`` (whose clock is ``vc``)."""
        with self.lock:
            self._drain(stream, seq)
            _join(self.host_vc, vc)

    # ---- draining --------------------------------------------------------------------------

    def _drain(self, stream: HostStream, seq: int) -> None:
        """Run what completing ``stream`` up to ``seq`` needs, and nothing more."""
        target, todo = {}, []

        def need(s: HostStream, q: int) -> None:
            if q > max(target.get(s, 0), s.done):
                target[s] = q
                todo.append(s)

        need(stream, seq)
        while todo:
            s = todo.pop()
            for item in s.queue:
                if item.seq > target[s]:
                    break
                if item.kind == "wait":
                    need(*item.dep)
        while True:
            waiting = [s for s, q in target.items() if s.done < q]
            if not waiting:
                return
            ready = [s for s in waiting if s.queue[0].kind != "wait" or s.queue[0].dep[0].done >= s.queue[0].dep[1]]
            assert ready, f"streams wait on each other: {waiting}"
            if self.seed is None:  # the most recently queued work first
                s = max(ready, key=lambda r: r.queue[0].order)
            else:
                s = self.rng.choice(sorted(ready, key=lambda r: r.id))
            item = s.queue.popleft()
            s.done = item.seq
            if item.kind == "op":
                item.fn()
                seconds = 1e-6 + 1e-9 * item.cost
                self.clock += seconds
                s.work += seconds
                if self.executed is not None:
                    self.executed.append((s.name, item.name))
            elif item.kind == "mark" and item.event.stream is s and item.event.seq == item.seq:
                item.event.stamp = self.clock

    # ---- device arrays ---------------------------------------------------------------------

    def _alloc(self, shape, dtype, label: str | None = None) -> DeviceArray:
        out = np.ndarray.__new__(DeviceArray, shape, dtype)
        if out.dtype.kind == "f":
            np.ndarray.fill(out, np.nan)
        else:
            out.view(np.ndarray).view(np.uint8).fill(0x5A)
        out._device = self
        out._label = label or f"device {_describe(out)} from {_site()}"
        return out

    def _upload(self, host, stream: HostStream, dtype=None) -> DeviceArray:
        """A host-to-device copy queued on ``stream``: from page-locked memory, read when the
        copy runs; from pageable memory, staged now (CUDA copies it before returning)."""
        if isinstance(host, PinnedArray) and (dtype is None or np.dtype(dtype) == host.dtype):
            source, reads = host, [host]
        else:
            source, reads = np.array(_plain(host), dtype=dtype, copy=True, order="C"), []
        out = self._alloc(source.shape, source.dtype, f"device {_describe(source)} uploaded at {_site()}")
        self._enqueue(stream, "upload", reads, [out], lambda: np.copyto(_plain(out), _plain(source)))
        return out

    def _copy(self, array: DeviceArray, dtype, name: str) -> DeviceArray:
        out = self._alloc(array.shape, dtype)
        self._enqueue(self._current(), name, [array], [out],
                      lambda: np.copyto(_plain(out), _plain(array), casting="unsafe"))
        return out

    def _setitem(self, array: DeviceArray, key, value) -> None:
        if isinstance(value, np.ndarray) and not isinstance(value, DeviceArray):
            value = np.array(value, copy=True)  # pageable host data: staged now
        self._enqueue(self._current(), "item assignment", _device_arrays(value) + _device_arrays(key), [array],
                      lambda: np.ndarray.__setitem__(_plain(array), _plain(key), _plain(value)))

    def _ufunc(self, ufunc, method: str, inputs: tuple, kwargs: dict):
        if method not in ("__call__", "reduce", "accumulate"):
            raise NotImplementedError(f"{ufunc.__name__}.{method} on device arrays is not modelled")
        out = kwargs.pop("out", None)
        if out is None:
            with np.errstate(all="ignore"):
                ghost = getattr(ufunc, method)(*_ghost(inputs), **_ghost(kwargs))
            ghost = ghost if isinstance(ghost, tuple) else (ghost,)
            outs = tuple(self._alloc(np.shape(g), np.asarray(g).dtype) for g in ghost)
        else:
            outs = out if isinstance(out, tuple) else (out,)
            for o in outs:
                if not isinstance(o, DeviceArray):
                    raise TypeError(f"{ufunc.__name__} into a host array from device arrays")
            _ghost(inputs)  # refuses host arrays
        name = ufunc.__name__ if method == "__call__" else f"{ufunc.__name__}.{method}"
        self._enqueue(self._current(), name, _device_arrays(inputs) + _device_arrays(kwargs), list(outs),
                      lambda: getattr(ufunc, method)(*_plain(inputs), out=_plain(outs), **_plain(kwargs)))
        return outs[0] if len(outs) == 1 else outs

    def _function(self, func, args: tuple, kwargs: dict):
        """A numpy function over device arrays: its result in a new device buffer, computed
        when the queued copy runs."""
        name = getattr(func, "__name__", str(func))
        if func is np.copyto:
            dst, src = args[0], args[1]
            if not isinstance(dst, DeviceArray):
                raise TypeError("np.copyto from a device array into host memory (use device.download)")
            if isinstance(src, np.ndarray) and not isinstance(src, DeviceArray):
                src = np.array(src, copy=True)  # pageable host data: staged now
            rest = _plain(dict(kwargs, **dict(zip(("casting", "where"), args[2:]))))
            self._enqueue(self._current(), "copyto", _device_arrays(src) + _device_arrays(rest), [dst],
                          lambda: np.copyto(_plain(dst), _plain(src), **rest))
            return None
        if "out" in kwargs:
            raise NotImplementedError(f"np.{name}(..., out=) on device arrays is not modelled")
        with np.errstate(all="ignore"):
            ghost = func(*_ghost(args), **_ghost(kwargs))
        if not isinstance(ghost, (np.ndarray, np.generic)):
            raise NotImplementedError(f"np.{name} on device arrays returns {type(ghost).__name__}: not modelled")
        out = self._alloc(np.shape(ghost), np.asarray(ghost).dtype)
        self._enqueue(self._current(), name, _device_arrays(args) + _device_arrays(kwargs), [out],
                      lambda: np.copyto(_plain(out), func(*_plain(args), **_plain(kwargs)), casting="unsafe"))
        return out

    def _output_shape(self, net, run, x) -> tuple:
        dims = tuple(net.model.outputs[0].shape)
        if all(d >= 0 for d in dims[1:]):
            return (x.shape[0], *dims[1:])
        with self.lock:  # a dynamic output: one run on zeros per input shape
            cache = self.__dict__.setdefault("_shapes", {})
            key = (id(net), x.shape)
            if key not in cache:
                cache[key] = run(np.zeros(x.shape, x.dtype)).shape
            return cache[key]

    # ---- the host --------------------------------------------------------------------------

    def _host_op(self, name: str, reads, writes, fn):
        """Host work on page-locked memory, in program order, after its hazard check."""
        with self.lock:
            if self.hazards:
                self.host_vc[HOST] += 1
                self._access(HOST, self.host_vc[HOST], self.host_vc, f"host {name} ({_site()})", reads, writes)
            return fn()

    def _host_read(self, array: DeviceArray) -> np.ndarray:
        """A device value read on the host (``float(a)``, ``a.item()``): CuPy copies it on the
        current stream and waits."""
        stream = self._current()
        stream.synchronize()
        with self.lock:
            if self.hazards:
                self.host_vc[HOST] += 1
                self._access(HOST, self.host_vc[HOST], self.host_vc, f"host read ({_site()})", [array], [])
            return np.array(_plain(array), copy=True)

    # ---- hazards ---------------------------------------------------------------------------

    def _buffer(self, array: np.ndarray) -> _Buffer:
        root = _root(array)
        key = id(root)
        buffer = self.buffers.get(key)
        if buffer is None:
            label = getattr(root, "_label", None) or getattr(array, "_label", None) or f"host {_describe(root)}"
            buffer = self.buffers[key] = _Buffer(label)
            weakref.finalize(root, self.buffers.pop, key, None)
        return buffer

    def _access(self, actor: int, clock: int, vc: dict, what: str, reads, writes) -> None:
        """Check and record ``what`` (actor's item ``clock``, vector clock ``vc``)."""
        for array in reads:
            buffer = self._buffer(array)
            if buffer.writer is not None:
                self._ordered(buffer, buffer.writer, vc, what, "reads", "was written by")
            buffer.reads[actor] = (actor, clock, what)
        for array in writes:
            buffer = self._buffer(array)
            if buffer.writer is not None:
                self._ordered(buffer, buffer.writer, vc, what, "writes", "was written by")
            for read in buffer.reads.values():
                self._ordered(buffer, read, vc, what, "writes", "is read by")
            buffer.writer, buffer.reads = (actor, clock, what), {}

    @staticmethod
    def _ordered(buffer: _Buffer, earlier: tuple, vc: dict, what: str, verb: str, relation: str) -> None:
        actor, clock, before = earlier
        if vc.get(actor, 0) < clock:
            raise AssertionError(f"stream-order hazard: {what} {verb} {buffer.label}, which {relation} {before}, "
                                 f"with no event or synchronisation ordering the two")
