"""A stand-in device for the GPU pipeline on the CPU: numpy arrays, the CPU build of
kernels.cu, and streams/events that run in program order (a host time stamp per event)."""

from __future__ import annotations

import time

import numpy as np

from l2s_engine.stages import host_runner


class HostStream:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def wait_event(self, event) -> None:
        assert event.stamp is not None, "waited on an event that was never recorded"

    def synchronize(self) -> None:
        return None


class HostEvent:
    def __init__(self):
        self.stamp = None

    def record(self, stream=None) -> None:
        self.stamp = time.perf_counter()

    def synchronize(self) -> None:
        assert self.stamp is not None


class HostDevice:
    """The ``CudaDevice`` interface over numpy and ``HostKernels``."""

    xp = np
    name = "CPU stand-in device"

    def __init__(self, kernels):
        self.kernels = kernels
        self.uploads = 0

    def activate(self) -> None:
        return None

    def stream(self) -> HostStream:
        return HostStream()

    def event(self) -> HostEvent:
        return HostEvent()

    @staticmethod
    def elapsed(start: HostEvent, end: HostEvent) -> float:
        return end.stamp - start.stamp

    def pinned(self, n: int, dtype) -> np.ndarray:
        return np.empty(n, dtype)

    def upload(self, host: np.ndarray, stream) -> np.ndarray:
        self.uploads += 1
        return host.copy()

    def download(self, array: np.ndarray, out: np.ndarray, stream) -> None:
        np.copyto(out, array)

    @staticmethod
    def runner(net, stream):
        return host_runner(net)

    def memory_bytes(self) -> int:
        return 0
