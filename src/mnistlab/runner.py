"""The study runner: plans every section's steps, runs those not done yet, stores the results.

Each step is timed and its peak resident memory sampled (:class:`~mnistlab.measure.Measured`).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from threadpoolctl import threadpool_limits

from .config import StudyConfig, config_toml
from .datasets import Dataset
from .errors import ConfigError, MnistlabError, StepFailed
from .measure import Measured
from .sections import SECTIONS
from .step import Step
from .store import NOT_FINISHED, RunStore

log = logging.getLogger(__name__)


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


@dataclass
class PlannedStep:
    section: str
    step: Step
    key: str
    # argument -> key of the step whose result it receives (or label -> key, for a dict)
    needed_keys: dict[str, str | dict[str, str]]


def _per_argument(needs: dict, lookup) -> dict:
    """``lookup`` applied to each name of a step's ``needs`` (a name, or a dict of names)."""
    return {arg: lookup(names) if isinstance(names, str) else
            {label: lookup(name) for label, name in names.items()}
            for arg, names in needs.items()}


def plan_study(data: Dataset, config: StudyConfig,
               sections: list[str] | None = None) -> list[PlannedStep]:
    """Every step of every section (or of ``sections``) with its key, before anything is
    computed: a configuration that cannot work on this data fails here, in one line, not after
    three sections ran."""
    known = [s.NAME for s in SECTIONS]
    unknown = sorted(set(sections or []) - set(known))
    if unknown:
        raise ConfigError(f"sections: unknown section {unknown[0]!r} (use {', '.join(known)})")
    planned = []
    for section in SECTIONS:
        if sections is not None and section.NAME not in sections:
            continue
        keys: dict[str, str] = {}
        for step in section.plan(data, getattr(config, section.NAME), config.seed):
            needed = _per_argument(step.needs, keys.__getitem__)
            keys[step.name] = step.key(data.fingerprint, needed)
            planned.append(PlannedStep(section.NAME, step, keys[step.name], needed))
    return planned


class _NullProgress:
    def section(self, title: str, n_steps: int) -> None: ...
    def step(self, name: str) -> None: ...
    def advance(self) -> None: ...
    @contextmanager
    def running(self):
        yield self


def run_study(data: Dataset, config: StudyConfig, out: str | Path, *, profile: str = "full",
              sections: list[str] | None = None, progress: Any = None,
              client: Any = None) -> StudyOutcome:
    """Run every section (or ``sections``) on ``data``; finished steps already in ``out`` are
    not recomputed.

    Parameters
    ----------
    data : Dataset
    config : StudyConfig
    out : path
        Run folder (created if needed).
    profile : {"full", "quick"}
        Recorded with the study; the report states it.
    sections : list of str, optional
        Run only these sections (``explore``, ``unsupervised``, ``classic``, ``deep``).
    progress : object, optional
        Receives ``section``/``step``/``advance`` calls (the CLI's rich display).
    client : distributed.Client, optional
        Run the steps as Dask tasks on its cluster (see :mod:`mnistlab.cluster`); by default
        in this process, section after section, the one-core steps side by side (see
        :func:`_run_section`).

    Returns
    -------
    StudyOutcome
        The run folder, the study id, and which steps were computed or found done.
    """
    progress = progress or _NullProgress()
    planned = plan_study(data, config, sections)
    titles = {section.NAME: section.TITLE for section in SECTIONS}
    store = RunStore(out)
    outcome = StudyOutcome(Path(out), 0)
    try:
        outcome.study_id = store.begin_study(data.name, data.fingerprint, profile,
                                             config_toml(config), _context(data, config))
        with progress.running():
            if client is not None:
                from .cluster import run_graph

                progress.section(f"{len(planned)} steps on the Dask cluster", len(planned))
                done = run_graph(client, store, data, planned, progress)
                outcome.records = [done[item.key] for item in planned]
            else:
                records: dict[str, StepRecord] = {}
                for name in dict.fromkeys(item.section for item in planned):
                    section = [item for item in planned if item.section == name]
                    progress.section(titles[name], len(section))
                    _run_section(store, data, section, progress, records, usable_cores())
                outcome.records = [records[item.key] for item in planned]
        store.record_study_steps(outcome.study_id, [p.key for p in planned], "done")
    finally:
        store.close()
    return outcome


def _context(data: Dataset, config: StudyConfig) -> dict:
    """What the report needs of the study besides its results, recorded when it starts."""
    from .leaderboard import machine_card

    return {"seed": config.seed, "class_names": data.class_names,
            "image_shape": list(data.image_shape), "source": data.source,
            "digits": data.digits, "machine": machine_card()}


def run_studies(jobs: list[tuple[Dataset, StudyConfig, Path]], *, profile: str = "full",
                client: Any = None, progress: Any = None) -> list[StudyOutcome]:
    """Several studies ``(data, config, run folder)``: with a Dask ``client``, every step of
    every study in one graph, so that the workers share them; else one study after another."""
    if client is None:
        return [run_study(data, config, out, profile=profile, progress=progress)
                for data, config, out in jobs]
    from .cluster import run_graphs

    progress = progress or _NullProgress()
    opened: list[tuple[RunStore, Dataset, list[PlannedStep], StudyOutcome]] = []
    try:
        for data, config, out in jobs:
            planned = plan_study(data, config)
            store = RunStore(out)
            outcome = StudyOutcome(Path(out), 0)
            opened.append((store, data, planned, outcome))
            outcome.study_id = store.begin_study(data.name, data.fingerprint, profile,
                                                 config_toml(config), _context(data, config))
        total = sum(len(planned) for _, _, planned, _ in opened)
        with progress.running():
            progress.section(f"{total} steps of {len(jobs)} studies on the Dask cluster", total)
            done = run_graphs(client, [(st, d, p) for st, d, p, _ in opened], progress)
        for (store, _, planned, outcome), records in zip(opened, done):
            outcome.records = [records[item.key] for item in planned]
            store.record_study_steps(outcome.study_id, [p.key for p in planned], "done")
    finally:
        for store, *_ in opened:
            store.close()
    return [outcome for *_, outcome in opened]


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _needed(item: PlannedStep) -> list[str]:
    """Keys of the steps whose results ``item`` receives."""
    return [key for value in item.needed_keys.values()
            for key in ([value] if isinstance(value, str) else value.values())]


def _run_section(store: RunStore, data: Dataset, items: list[PlannedStep], progress: Any,
                 records: dict[str, StepRecord], cores: int) -> None:
    """Compute a section's steps not done yet, in plan order, in this process.

    A step marked ``one_core`` (libsvm, a tree, UMAP's seeded layout) leaves the other cores
    idle, so such steps compute side by side, one per core, each in a thread of its own (their
    libraries release the GIL), with BLAS and OpenMP held to one thread; every other step
    computes alone, here, with every core. Only this thread touches the store: it loads a
    step's inputs before it starts and saves its result as soon as it ends, so a step that
    fails, or Ctrl-C, loses none that finished.
    """
    pending = list(items)
    beside = _Beside(store, progress, records)
    try:
        while pending and beside.failure is None:
            item = _next_step(pending, records, beside.running, cores)
            if item is None:
                beside.collect(block=True)
                continue
            pending.remove(item)
            problem = store.stored_problem(item.key)
            progress.step(item.step.name if problem in (None, NOT_FINISHED) else
                          f"{item.step.name} (recomputing: it {problem})")
            if problem is None:
                records[item.key] = StepRecord(item.section, item.step.name, item.key, True, 0.0)
                progress.advance()
                continue
            inputs = _start(store, item, problem)
            if item.step.one_core and cores > 1:
                beside.start(item, data, inputs)
            else:
                records[item.key] = _save(store, item, *_compute(item, data, inputs))
                progress.advance()
        while beside.running:
            beside.collect(block=True)
    except KeyboardInterrupt:
        beside.collect(block=False)  # what finished meanwhile is saved
        raise
    if beside.failure is not None:
        raise beside.failure


def _next_step(pending: list[PlannedStep], records: dict[str, StepRecord],
               running: dict[str, PlannedStep], cores: int) -> PlannedStep | None:
    """The first pending step whose inputs are ready and that may start now (a one-core
    step beside the one-core steps running, any step when none runs), or None: wait."""
    if len(running) >= cores:
        return None
    ready = [item for item in pending if all(key in records for key in _needed(item))]
    if running:
        return next((item for item in ready if item.step.one_core), None)
    if not ready:  # cannot happen: the plan lists every step after the steps it needs
        raise RuntimeError(f"no step of {[item.step.name for item in pending]} can start")
    return ready[0]


class _Beside:
    """The one-core steps computing in threads of their own; their results come back here,
    to the thread that owns the store."""

    def __init__(self, store: RunStore, progress: Any, records: dict[str, StepRecord]):
        self.store, self.progress, self.records = store, progress, records
        self.finished: queue.Queue = queue.Queue()
        self.running: dict[str, PlannedStep] = {}
        self.failure: BaseException | None = None
        self._one_blas_thread: threadpool_limits | None = None

    def start(self, item: PlannedStep, data: Dataset, inputs: dict) -> None:
        if self._one_blas_thread is None:  # OpenBLAS's thread count is the process's
            self._one_blas_thread = threadpool_limits(limits=1, user_api="blas")
        self.running[item.key] = item
        threading.Thread(target=_compute_beside, args=(item, data, inputs, self.finished),
                         name=f"mnistlab {item.step.name}", daemon=True).start()

    def collect(self, block: bool) -> None:
        """Save what has finished (waiting for one first if ``block``); once none runs,
        BLAS gets its threads back."""
        while self.running:
            try:
                key, outcome, cost = self.finished.get(block=block)
            except queue.Empty:
                return
            item = self.running.pop(key)
            if isinstance(outcome, BaseException):
                self.failure = self.failure or outcome
            else:
                self.records[key] = _save(self.store, item, outcome, cost)
                self.progress.advance()
            block = False  # one wait, then whatever else has finished meanwhile
        if self._one_blas_thread is not None:
            self._one_blas_thread.restore_original_limits()
            self._one_blas_thread = None


def _start(store: RunStore, item: PlannedStep, problem: str) -> dict:
    """The step's inputs, loaded from the store, and the step marked running."""
    section, step, key = item.section, item.step, item.key
    if problem != NOT_FINISHED:
        log.info("%s.%s %s; recomputing it", section, step.name, problem)
    inputs = _per_argument(item.needed_keys, store.load_result)
    if step.files:
        inputs.update(files_dir=store.folder / "models", files_key=key)
    store.mark_running(key, section, step.name,
                       {"fn": step.qualname, "arguments": step.arguments})
    log.info("computing %s.%s", section, step.name)
    return inputs


def _compute(item: PlannedStep, data: Dataset, inputs: dict) -> tuple[Any, Measured]:
    try:
        with Measured() as cost:
            result = item.step(data, **inputs)
    except MnistlabError:
        raise
    except Exception as exc:  # a bug: say which step, keep the original as the cause
        raise StepFailed(f"{item.section}.{item.step.name}", exc) from exc
    return result, cost


def _compute_beside(item: PlannedStep, data: Dataset, inputs: dict,
                    finished: queue.Queue) -> None:
    """A one-core step in its own thread; OpenMP's thread count is per calling thread."""
    try:
        with threadpool_limits(limits=1, user_api="openmp"):
            result, cost = _compute(item, data, inputs)
        finished.put((item.key, result, cost))
    except BaseException as exc:  # handed to the main thread, which raises it
        finished.put((item.key, exc, None))


def _save(store: RunStore, item: PlannedStep, result: Any, cost: Measured) -> StepRecord:
    store.save_step(item.key, result, wall_s=cost.wall_s, peak_rss_mb=cost.peak_mb,
                    rss_delta_mb=cost.delta_mb)
    return StepRecord(item.section, item.step.name, item.key, False, cost.wall_s)
