"""Wall time and peak resident memory of a block of code.

Peak memory is sampled by a background thread reading RSS every 10 ms: ``ru_maxrss`` only ever
grows, so it cannot attribute a peak to one step or one model of a process. A process that
exists for one job (a network's training process) reads the kernel's own high-water mark
instead (:func:`process_peak_mb`): exact, and free, where the sampler cost a one-thread training
9 % of its time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psutil

_this_step = threading.local()


def cores_given() -> int | None:
    """The cores the study gives the step computing in this thread, where it gives it fewer
    than the machine's: 1 beside another step, a Dask worker's share. None: every core. Read
    by the steps that compute in a process of their own (the networks), which no thread limit
    of this process reaches."""
    return getattr(_this_step, "cores", None)


@contextmanager
def given_cores(cores: int) -> Iterator[None]:
    """The step computed in this thread within the block is given ``cores``."""
    before = cores_given()
    _this_step.cores = cores
    try:
        yield
    finally:
        _this_step.cores = before


def process_peak_mb() -> float | None:
    """This process's peak resident memory since it started (Linux's VmHWM), in MiB; None
    where /proc does not say. Unlike ``ru_maxrss`` it starts afresh at exec: a spawned child's
    value is its own, not its parent's pages at fork."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


class Measured:
    """Context manager: ``wall_s``, ``peak_mb``, ``delta_mb`` and ``ended`` (the clock time
    it ended, :func:`time.time`) once the block has run.

    ``interval_s=None`` samples nothing: the peak is the process's own high-water mark
    (:func:`process_peak_mb`), for a process that exists for this block alone."""

    def __init__(self, interval_s: float | None = 0.01):
        self.interval_s = interval_s
        self.process = psutil.Process()
        self.wall_s = 0.0
        self.ended = 0.0
        self._stop = threading.Event()

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.peak_mb = max(self.peak_mb, self.process.memory_info().rss / 2**20)

    def __enter__(self) -> Measured:
        self.start_mb = self.peak_mb = self.process.memory_info().rss / 2**20
        self._thread = (threading.Thread(target=self._sample, daemon=True)
                        if self.interval_s is not None else None)
        if self._thread is not None:
            self._thread.start()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall_s = time.perf_counter() - self._t0
        self.ended = time.time()
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak_mb = max(self.peak_mb, self.process.memory_info().rss / 2**20)
        if self.interval_s is None:
            self.peak_mb = max(self.peak_mb, process_peak_mb() or 0.0)

    @property
    def delta_mb(self) -> float:
        return self.peak_mb - self.start_mb
