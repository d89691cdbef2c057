"""The in-process executor: a study's steps computed on this machine, by this process.

Section after section, the one-core steps side by side in threads (:func:`run_section`), a step
marked ``own_process`` in a process of its own beside them all (:class:`_Apart`). Each step is
timed and its peak resident memory sampled (:class:`~mnistlab.engine.measure.Measured`).
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from threadpoolctl import threadpool_limits

from ..core.errors import MnistlabError, StepFailed
from ..core.machine import usable_cores, yield_to_the_study
from .measure import Measured, given_cores
from .plan import PlannedStep, Progress, StepRecord, StudyGraph, per_argument
from .store import NOT_FINISHED, RunStore

log = logging.getLogger(__name__)


class InProcess:
    """Runs each study's steps here, one study after the other (see :func:`run_here`)."""

    def run(self, graphs: list[StudyGraph], progress: Progress) -> list[dict[str, StepRecord]]:
        return [run_here(graph, progress) for graph in graphs]


def run_here(graph: StudyGraph, progress: Progress) -> dict[str, StepRecord]:
    """The steps of ``graph`` in this process, section after section (see
    :func:`run_section`), those marked ``own_process`` apart (see :class:`_Apart`); their
    records by key."""
    store, data, planned = graph.store, graph.data, graph.planned
    records: dict[str, StepRecord] = {}
    cores = usable_cores()
    apart = _Apart(store, data, planned if cores > 1 else [], progress, records, graph.titles)
    try:
        apart.poll()
        for name in dict.fromkeys(item.section for item in planned):
            section = [item for item in planned if item.section == name]
            progress.section(graph.titles.get(name, name), len(section))
            run_section(store, data, [item for item in section if item not in apart.items],
                        progress, records, cores, apart)
            apart.poll()
            graph.notify(records)
        apart.finish()
        graph.notify(records)
    finally:
        apart.stop()  # after Ctrl-C or a failure: saves what finished first
    return records


def run_section(store: RunStore, data: Any, items: list[PlannedStep], progress: Any,
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
               running: dict[str, Any], cores: int) -> PlannedStep | None:
    """The first pending step whose inputs are ready and that may start now (a one-core
    step beside the one-core steps running, any step when none runs), or None: wait."""
    if len(running) >= cores:
        return None
    ready = [item for item in pending if all(key in records for key in item.needed)]
    if running:
        return next((item for item in ready if item.step.one_core), None)
    if not ready:  # cannot happen: the plan lists every step after the steps it needs
        raise RuntimeError(f"no step of {[item.step.name for item in pending]} can start")
    return ready[0]


# How often a wait for the steps computing beside looks for a thread that ended silently.
_LOOK_EVERY_S = 1.0


class _Beside:
    """The one-core steps computing in threads of their own; their results come back here,
    to the thread that owns the store."""

    def __init__(self, store: RunStore, progress: Any, records: dict[str, StepRecord]):
        self.store, self.progress, self.records = store, progress, records
        self.finished: queue.Queue = queue.Queue()
        self.running: dict[str, tuple[PlannedStep, threading.Thread]] = {}  # key: item, thread
        self.failure: BaseException | None = None
        self._one_blas_thread: threadpool_limits | None = None

    def start(self, item: PlannedStep, data: Any, inputs: dict) -> None:
        if self._one_blas_thread is None:  # OpenBLAS's thread count is the process's
            self._one_blas_thread = threadpool_limits(limits=1, user_api="blas")
        thread = threading.Thread(target=_compute_beside,
                                  args=(item, data, inputs, self.finished),
                                  name=f"mnistlab {item.step.name}", daemon=True)
        self.running[item.key] = (item, thread)
        thread.start()

    def collect(self, block: bool, timeout: float | None = None) -> None:
        """Save what has finished (waiting for one first, at most ``timeout`` seconds, if
        ``block``); once none runs, BLAS gets its threads back."""
        while self.running:
            try:
                key, outcome, cost = self._next_finished(block, timeout)
            except queue.Empty:
                return
            item, _ = self.running.pop(key)
            if isinstance(outcome, BaseException):
                self.failure = self.failure or outcome
            else:
                self.records[key] = _save(self.store, item, outcome, cost)
                self.progress.advance()
            block = False  # one wait, then whatever else has finished meanwhile
        if self._one_blas_thread is not None:
            self._one_blas_thread.restore_original_limits()
            self._one_blas_thread = None

    def _next_finished(self, block: bool, timeout: float | None) -> tuple:
        """The next (key, result or exception, cost) a step's thread handed back. Waiting with
        no timeout, it looks every ``_LOOK_EVERY_S`` for a thread that ended without handing
        anything back (a bug here, not in the step, which cannot raise past
        ``_compute_beside``): that step fails instead of the study waiting for it for ever."""
        while True:
            try:
                return self.finished.get(block=block,
                                         timeout=_LOOK_EVERY_S if timeout is None else timeout)
            except queue.Empty:
                if not block or timeout is not None:
                    raise
            silent = [key for key, (_, thread) in self.running.items() if not thread.is_alive()]
            if silent and self.finished.empty():  # a thread hands its result back, then ends
                item, _ = self.running[silent[0]]
                cause = RuntimeError("its thread ended without a result")
                return silent[0], StepFailed(item.where, cause), None


class _Apart:
    """The steps marked ``own_process`` (UMAP's layout, which holds the GIL), each computed in
    a spawned process of its own as soon as its inputs are ready, beside the sections this
    process runs. Their results come back through a pipe to the thread that owns the store.

    ``items``: those of ``planned`` computed apart (none on a one-core machine, where they
    compute in plan order like any other step).
    """

    def __init__(self, store: RunStore, data: Any, planned: list[PlannedStep],
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
                    and all(key in self.records for key in item.needed)):
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
            self.progress.advance(self.titles.get(item.section, item.section))
            return
        inputs = _start(self.store, item, problem)
        context = multiprocessing.get_context("spawn")  # no fork of a process with threads
        here, there = context.Pipe()
        process = context.Process(target=_compute_apart, args=(item, there),
                                  name=f"mnistlab {item.step.name}", daemon=True)
        with _sigint_ignored():
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
            where = item.where
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
                self.progress.advance(self.titles.get(item.section, item.section))


@contextmanager
def _sigint_ignored() -> Iterator[None]:
    """Ctrl-C reaches every process of the terminal's group: a child still starting up printed
    a traceback of Python's start-up ("Ran out of input"). A child started within this block
    inherits SIGINT ignored (through exec; Python then leaves it so), and this process, which
    gets the KeyboardInterrupt, ends it (:meth:`_Apart.stop`). Only the main thread may set a
    signal's handler; elsewhere nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


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
    inputs = per_argument(item.needed_keys, store.load_result)
    if step.files:
        inputs.update(files_dir=store.folder / "models", files_key=key)
    store.mark_running(key, section, step.name,
                       {"fn": step.qualname, "arguments": step.arguments,
                        **({"own_process": True} if step.own_process else {})})
    log.info("computing %s.%s", section, step.name)
    return inputs


def _compute(item: PlannedStep, data: Any, inputs: dict,
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


def _compute_beside(item: PlannedStep, data: Any, inputs: dict,
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
