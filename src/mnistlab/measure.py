"""Wall time and peak resident memory of a block of code.

Peak memory is sampled by a background thread reading RSS every 10 ms: ``ru_maxrss`` only ever
grows, so it cannot attribute a peak to one step or one model of a process.
"""

from __future__ import annotations

import threading
import time

import psutil


class Measured:
    """Context manager: ``wall_s``, ``peak_mb`` and ``delta_mb`` once the block has run."""

    def __init__(self, interval_s: float = 0.01):
        self.interval_s = interval_s
        self.process = psutil.Process()
        self.wall_s = 0.0
        self._stop = threading.Event()

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.peak_mb = max(self.peak_mb, self.process.memory_info().rss / 2**20)

    def __enter__(self) -> Measured:
        self.start_mb = self.peak_mb = self.process.memory_info().rss / 2**20
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall_s = time.perf_counter() - self._t0
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, self.process.memory_info().rss / 2**20)

    @property
    def delta_mb(self) -> float:
        return self.peak_mb - self.start_mb
