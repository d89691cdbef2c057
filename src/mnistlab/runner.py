"""The study runner: plans every section's steps, runs those not done yet, stores the results.

Each step is timed and its peak resident memory sampled (a background thread reads RSS every
10 ms: ``ru_maxrss`` only ever grows, so it cannot attribute a peak to one step).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from .config import StudyConfig, config_toml
from .datasets import Dataset
from .sections import SECTIONS
from .step import Step
from .store import RunStore, to_json

log = logging.getLogger(__name__)

# Bump when a change to the computations makes stored results stale.
CODE_VERSION = "1"


@dataclass
class StepRecord:
    section: str
    name: str
    key: str
    cached: bool
    wall_s: float


@dataclass
class StudyOutcome:
    folder: Path
    study_id: int
    records: list[StepRecord] = field(default_factory=list)

    @property
    def computed(self) -> list[StepRecord]:
        return [r for r in self.records if not r.cached]


def step_key(fingerprint: str, section: str, step: Step, needed_keys: list[str]) -> str:
    payload = to_json({"v": CODE_VERSION, "data": fingerprint, "section": section,
                       "step": step.name, "params": step.params, "needs": needed_keys})
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


class PeakMemory:
    """Peak RSS of this process (MiB) while the ``with`` block runs."""

    def __init__(self, interval_s: float = 0.01):
        self.interval_s = interval_s
        self.process = psutil.Process()
        self.start_mb = self.peak_mb = self.process.memory_info().rss / 2**20
        self._stop = threading.Event()

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.peak_mb = max(self.peak_mb, self.process.memory_info().rss / 2**20)

    def __enter__(self) -> PeakMemory:
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, self.process.memory_info().rss / 2**20)


class _NullProgress:
    def section(self, title: str, n_steps: int) -> None: ...
    def step(self, name: str) -> None: ...
    def advance(self) -> None: ...
    @contextmanager
    def running(self):
        yield self


def run_study(data: Dataset, config: StudyConfig, out: str | Path, *, profile: str = "full",
              progress: Any = None) -> StudyOutcome:
    """Run every section on ``data``; finished steps already in ``out`` are not recomputed.

    Parameters
    ----------
    data : Dataset
    config : StudyConfig
    out : path
        Run folder (created if needed).
    profile : {"full", "quick"}
        Recorded with the study; the report states it.
    progress : object, optional
        Receives ``section``/``step``/``advance`` calls (the CLI's rich display).

    Returns
    -------
    StudyOutcome
        The run folder, the study id, and which steps were computed or found done.
    """
    progress = progress or _NullProgress()
    store = RunStore(out)
    outcome = StudyOutcome(Path(out), 0)
    try:
        outcome.study_id = store.begin_study(data.name, data.fingerprint, profile,
                                             config_toml(config))
        keys = []
        with progress.running():
            for section in SECTIONS:
                params = getattr(config, section.NAME)
                steps = section.plan(data, params, config.seed)
                progress.section(section.TITLE, len(steps))
                section_keys: dict[str, str] = {}
                for step in steps:
                    key = step_key(data.fingerprint, section.NAME, step,
                                   [section_keys[n] for n in step.needs])
                    section_keys[step.name] = key
                    keys.append(key)
                    progress.step(step.name)
                    outcome.records.append(_run_step(store, section.NAME, step, key,
                                                     section_keys))
                    progress.advance()
        store.record_study_steps(outcome.study_id, keys, "done")
    finally:
        store.close()
    return outcome


def _run_step(store: RunStore, section: str, step: Step, key: str,
              section_keys: dict[str, str]) -> StepRecord:
    if store.is_done(key):
        return StepRecord(section, step.name, key, True, 0.0)
    inputs = {name: store.load_result(section_keys[name]) for name in step.needs}
    store.mark_running(key, section, step.name, step.params)
    log.info("computing %s.%s", section, step.name)
    started = time.perf_counter()
    with PeakMemory() as memory:
        result = step.run(inputs)
    wall = time.perf_counter() - started
    store.save_step(key, result, wall_s=wall, peak_rss_mb=memory.peak_mb,
                    rss_delta_mb=memory.peak_mb - memory.start_mb)
    return StepRecord(section, step.name, key, False, wall)
