"""The study runner: plans every section's steps, runs those not done yet, stores the results.

Each step is timed and its peak resident memory sampled (:class:`~mnistlab.measure.Measured`).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from threadpoolctl import threadpool_limits

from .config import StudyConfig, config_toml
from .datasets import Dataset
from .errors import ConfigError, MnistlabError, StepFailed
from .measure import Measured, given_cores, yield_to_the_study
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
    def advance(self, section: str | None = None) -> None: ...
    @contextmanager
    def running(self):
        yield self


def run_study(data: Dataset, config: StudyConfig, out: str | Path, *, profile: str = "full",
              sections: list[str] | None = None, progress: Any = None,
              client: Any = None,
              section_done: Callable[[int, dict[str, list[str]]], None] | None = None
              ) -> StudyOutcome:
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
        :func:`_run_section`), a step marked ``own_process`` in a process of its own beside
        them all (see :class:`_Apart`).
    section_done : callable, optional
        Called as ``section_done(study_id, {section: its step keys})`` as soon as every step
        of those sections is stored, while the study goes on (the CLI hands them to a
        process that draws their figures meanwhile); it must return at once.

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
                handover = _SectionHandover(planned, outcome.study_id, section_done)
                done = run_graph(client, store, data, planned, progress, stored=handover)
                outcome.records = [done[item.key] for item in planned]
            else:
                records = _run_here(store, data, planned, progress, titles, outcome.study_id,
                                    section_done)
                outcome.records = [records[item.key] for item in planned]
        store.record_study_steps(outcome.study_id, [p.key for p in planned], "done")
    finally:
        store.close()
    return outcome


def _run_here(store: RunStore, data: Dataset, planned: list[PlannedStep], progress: Any,
              titles: dict[str, str], study_id: int,
              section_done: Callable[[int, dict[str, list[str]]], None] | None
              ) -> dict[str, StepRecord]:
    """The steps in this process, section after section (see :func:`_run_section`), those
    marked ``own_process`` apart (see :class:`_Apart`); their records by key."""
    records: dict[str, StepRecord] = {}
    cores = usable_cores()
    apart = _Apart(store, data, planned if cores > 1 else [], progress, records, titles)
    handover = _SectionHandover(planned, study_id, section_done)
    try:
        apart.poll()
        for name in handover.keys:
            section = [item for item in planned if item.section == name]
            progress.section(titles[name], len(section))
            _run_section(store, data, [item for item in section if item not in apart.items],
                         progress, records, cores, apart)
            apart.poll()
            handover(records)
        apart.finish()
        handover(records)
    finally:
        apart.stop()  # after Ctrl-C or a failure: saves what finished first
    return records


class _SectionHandover:
    """Calls ``section_done(study_id, {section: its step keys})`` once for each section, as
    soon as every step of it is in the records it is given (none when ``section_done`` is
    None)."""

    def __init__(self, planned: list[PlannedStep], study_id: int,
                 section_done: Callable[[int, dict[str, list[str]]], None] | None):
        self.keys: dict[str, list[str]] = {}  # section -> its step keys, in plan order
        for item in planned:
            self.keys.setdefault(item.section, []).append(item.key)
        self.study_id, self.section_done = study_id, section_done
        self.handed: set[str] = set()

    def __call__(self, records: dict[str, StepRecord]) -> None:
        finished = {name: keys for name, keys in self.keys.items()
                    if name not in self.handed and all(key in records for key in keys)}
        if finished and self.section_done is not None:
            self.section_done(self.study_id, finished)
        self.handed.update(finished)


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
                 records: dict[str, StepRecord], cores: int, apart: _Apart | None = None
                 ) -> None:
    """Compute a section's steps not done yet, in plan order, in this process.

    A step marked ``one_core`` (libsvm or a tree, which leave the other cores idle; a step a
    second thread makes little faster, such as a network's training) computes side by side with
    the others, one per core, each in a thread of its own (their libraries release the GIL, a
    network trains in a process of its own), with BLAS and OpenMP held to one thread (and
    ``given_cores`` saying 1 to those that compute in a process of their own); every other step
    computes alone, here, with every core. Only this thread touches the store: it loads a
    step's inputs before it starts and saves its result as soon as it ends, so a step that
    fails, or Ctrl-C, loses none that finished. A core that ``apart``'s process computes on is
    not offered to a one-core step here; between steps, ``apart`` saves what it finished and
    starts what it may.
    """
    pending = list(items)
    beside = _Beside(store, progress, records)
    try:
        while pending and beside.failure is None and (apart is None or apart.failure is None):
            if apart is not None:
                apart.poll()
            free = max(1, cores - len(apart.running)) if apart is not None else cores
            item = _next_step(pending, records, beside.running, free)
            if item is None:
                # A step computing apart frees its core when it ends: look again every half
                # second (waiting for a step here instead left that core idle for up to 53 s).
                beside.collect(block=True,
                               timeout=0.5 if apart is not None and apart.running else None)
                continue
            pending.remove(item)
            problem = store.stored_problem(item.key)
            progress.step(item.step.name if problem in (None, NOT_FINISHED) else
                          f"{item.step.name} (recomputing: it {problem})")
            if problem is None:
                records[item.key] = _found_done(item)
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
    if apart is not None and apart.failure is not None:
        raise apart.failure


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

    def collect(self, block: bool, timeout: float | None = None) -> None:
        """Save what has finished (waiting for one first, at most ``timeout`` seconds, if
        ``block``); once none runs, BLAS gets its threads back."""
        while self.running:
            try:
                key, outcome, cost = self.finished.get(block=block, timeout=timeout)
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


class _Apart:
    """The steps marked ``own_process`` (UMAP's layout, which holds the GIL), each computed in
    a spawned process of its own as soon as its inputs are ready, beside the sections this
    process runs. Their results come back through a pipe to the thread that owns the store.

    ``items``: those of ``planned`` computed apart (none on a one-core machine, where they
    compute in plan order like any other step).
    """

    def __init__(self, store: RunStore, data: Dataset, planned: list[PlannedStep],
                 progress: Any, records: dict[str, StepRecord], titles: dict[str, str]):
        self.store, self.data, self.progress, self.records = store, data, progress, records
        self.titles = titles
        self.items = [item for item in planned if item.step.own_process]
        self.running: dict[str, tuple[PlannedStep, Any, Any]] = {}  # key: item, process, pipe
        self.failure: BaseException | None = None

    def poll(self) -> None:
        """Save what finished, then start what may start."""
        self._collect(timeout=0)
        for item in self.items:
            if (self.failure is None and item.key not in self.records
                    and item.key not in self.running
                    and all(key in self.records for key in _needed(item))):
                self._start(item)

    def finish(self) -> None:
        """Wait for every step computed apart; raise the first failure."""
        while self.failure is None:
            self.poll()
            if not self.running:
                break
            names = ", ".join(item.step.name for item, _, _ in self.running.values())
            self.progress.step(f"waiting for {names}")
            self._collect(timeout=None)
        if self.failure is not None:
            raise self.failure

    def stop(self) -> None:
        """Save what finished; end the processes still computing (their work is lost)."""
        self._collect(timeout=0)
        for _, process, pipe in self.running.values():
            process.terminate()
            process.join()
            pipe.close()
        self.running.clear()

    def _start(self, item: PlannedStep) -> None:
        import multiprocessing

        problem = self.store.stored_problem(item.key)
        if problem is None:
            self.records[item.key] = _found_done(item)
            self.progress.advance(self.titles[item.section])
            return
        inputs = _start(self.store, item, problem)
        context = multiprocessing.get_context("spawn")  # no fork of a process with threads
        here, there = context.Pipe()
        process = context.Process(target=_compute_apart, args=(item, there),
                                  name=f"mnistlab {item.step.name}", daemon=True)
        process.start()
        there.close()  # the child's end: EOF here once the child exits
        # The data go through the pipe, not as the process's arguments: spawn writes those to
        # the child while it still holds the child's end of that pipe itself, so a child that
        # dies while it starts (a script without `if __name__ == "__main__":`) left this
        # process blocked for ever on megabytes nobody reads. Here its death is an EOF.
        try:
            here.send((self.data, inputs))
        except OSError:  # it died first: _collect reports its exit status
            pass
        self.running[item.key] = (item, process, here)

    def _collect(self, timeout: float | None) -> None:
        from multiprocessing.connection import wait

        pipes = {pipe: key for key, (_, _, pipe) in self.running.items()}
        for pipe in wait(list(pipes), timeout):
            item, process, _ = self.running.pop(pipes[pipe])
            where = f"{item.section}.{item.step.name}"
            try:
                outcome, cost = pipe.recv()
            except EOFError:
                process.join()
                outcome, cost = RuntimeError(f"its process exited with status "
                                             f"{process.exitcode}"), None
            pipe.close()
            process.join()
            if cost is None:
                self.failure = self.failure or (
                    outcome if isinstance(outcome, MnistlabError) else StepFailed(where, outcome))
            else:
                self.records[item.key] = _save(self.store, item, outcome, cost)
                self.progress.advance(self.titles[item.section])


@dataclass
class _Cost:
    """A finished :class:`Measured`, as a child process sends it back."""
    wall_s: float
    peak_mb: float
    delta_mb: float
    ended: float


def _compute_apart(item: PlannedStep, answer: Any) -> None:
    """In a spawned process: the step on one core, from the data and inputs ``answer``
    brings; its result (or error) sent back through it."""
    os.environ["NUMBA_NUM_THREADS"] = "1"  # read by numba when this step imports it
    # read by the OpenMP and BLAS runtimes a library loads during the step, after
    # threadpool_limits below has limited those already loaded (scikit-learn's OpenMP,
    # scipy's OpenBLAS: two threads each without it). With a second OpenMP thread the
    # embedding's clusters on Fashion-MNIST came out otherwise (accuracy 0.639 against 0.608
    # on one thread, pinned or by this variable)
    os.environ["OMP_NUM_THREADS"] = "1"
    yield_to_the_study()
    try:
        data, inputs = answer.recv()
        with threadpool_limits(limits=1):
            result, cost = _compute(item, data, inputs, own_process=True)
        answer.send((result, _Cost(cost.wall_s, cost.peak_mb, cost.delta_mb, cost.ended)))
    except BaseException as exc:
        # StepFailed does not survive pickling: its cause goes back, the parent wraps it
        cause = exc.__cause__ if isinstance(exc, StepFailed) and exc.__cause__ else exc
        try:
            answer.send((cause, None))
        except Exception:  # an exception that cannot be pickled: its text
            answer.send((RuntimeError(f"{type(cause).__name__}: {cause}"), None))


def _found_done(item: PlannedStep) -> StepRecord:
    """The record of a step whose result is stored already (nothing computed)."""
    return StepRecord(item.section, item.step.name, item.key, True, 0.0)


def _start(store: RunStore, item: PlannedStep, problem: str) -> dict:
    """The step's inputs, loaded from the store, and the step marked running."""
    section, step, key = item.section, item.step, item.key
    if problem != NOT_FINISHED:
        log.info("%s.%s %s; recomputing it", section, step.name, problem)
    inputs = _per_argument(item.needed_keys, store.load_result)
    if step.files:
        inputs.update(files_dir=store.folder / "models", files_key=key)
    store.mark_running(key, section, step.name,
                       {"fn": step.qualname, "arguments": step.arguments,
                        **({"own_process": True} if step.own_process else {})})
    log.info("computing %s.%s", section, step.name)
    return inputs


def _compute(item: PlannedStep, data: Dataset, inputs: dict,
             own_process: bool = False) -> tuple[Any, Measured]:
    try:
        # In a process of its own, a step's peak is that process's high-water mark.
        with Measured(interval_s=None if own_process else 0.01) as cost:
            result = item.step(data, **inputs)
    except MnistlabError:
        raise
    except Exception as exc:  # a bug: say which step, keep the original as the cause
        raise StepFailed(f"{item.section}.{item.step.name}", exc) from exc
    return result, cost


def _compute_beside(item: PlannedStep, data: Dataset, inputs: dict,
                    finished: queue.Queue) -> None:
    """A one-core step in its own thread; OpenMP's thread count is per calling thread, and
    a step that computes in a process of its own reads its share from ``given_cores``."""
    try:
        with threadpool_limits(limits=1, user_api="openmp"), given_cores(1):
            result, cost = _compute(item, data, inputs)
        finished.put((item.key, result, cost))
    except BaseException as exc:  # handed to the main thread, which raises it
        finished.put((item.key, exc, None))


def _save(store: RunStore, item: PlannedStep, result: Any, cost: Measured) -> StepRecord:
    store.save_step(item.key, result, wall_s=cost.wall_s, peak_rss_mb=cost.peak_mb,
                    rss_delta_mb=cost.delta_mb, finished=cost.ended)
    return StepRecord(item.section, item.step.name, item.key, False, cost.wall_s)
