"""The study runner: plans every section's steps, runs those not done yet, stores the results.

Each step is timed and its peak resident memory sampled (:class:`~mnistlab.measure.Measured`).
"""

from __future__ import annotations

import hashlib
import logging
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import StudyConfig, config_toml
from .datasets import Dataset
from .errors import MnistlabError, StepFailed
from .measure import Measured
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
    try:
        with Measured() as cost:
            result = step.run(inputs, store.folder) if step.files else step.run(inputs)
    except MnistlabError:
        raise
    except Exception as exc:  # a bug: say which step, keep the original as the cause
        raise StepFailed(f"{section}.{step.name}", exc) from exc
    store.save_step(key, result, wall_s=cost.wall_s, peak_rss_mb=cost.peak_mb,
                    rss_delta_mb=cost.delta_mb)
    return StepRecord(section, step.name, key, False, cost.wall_s)
