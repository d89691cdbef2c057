"""The runner, in process, on sections made for the test: each step gets exactly its arguments
and the results it needs, a finished step is never recomputed, a failure names its step."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pytest

# loaded before any step runs, as the study's sections load it: a BLAS or OpenMP library a
# step loads for the first time is not under the limits already set
from sklearn.utils._openmp_helpers import _openmp_effective_n_threads

from conftest import make_images
from mnistlab import build_config
from mnistlab.core.errors import ConfigError, DatasetError, StepFailed
from mnistlab.data.datasets import Dataset, load_dataset
from mnistlab.engine.executors import run_here
from mnistlab.engine.plan import StudyGraph
from mnistlab.engine.step import bind, call_step
from mnistlab.engine.store import RunStore
from mnistlab.study.runner import plan_study, run_study

CALLS: list[tuple] = []


@dataclass
class Count:
    total: int
    values: np.ndarray


def count_pixels(data, *, n_samples, seed):
    CALLS.append(("count", n_samples, seed))
    return Count(int(data.x_train[:n_samples].sum()), np.arange(n_samples))


def add_one(data, *, counted):
    CALLS.append(("add", counted.total))
    return Count(counted.total + 1, counted.values + 1)


def combine(data, *, parts, files_dir, files_key):
    CALLS.append(("combine", sorted(parts), files_key))
    files_dir.mkdir(parents=True, exist_ok=True)
    (files_dir / f"combined-{files_key}.txt").write_text("weights")
    return Count(sum(p.total for p in parts.values()), np.zeros(1))


def fails(data, *, n_samples):
    raise ZeroDivisionError("a bug")


def rejects(data, *, n_samples):
    raise DatasetError("the user's data is wrong")


def _plan(data, params, seed, engine="sklearn", earlier=None):
    return [bind("count", count_pixels, params, seed),
            bind("add", add_one, params, seed, needs={"counted": "count"}),
            bind("combine", combine, params, seed, needs={"parts": {"a": "count", "b": "add"}},
                 files=True)]


@pytest.fixture
def tiny():
    x, y = make_images(40, size=6, seed=3)
    return Dataset("tiny", x[:30], y[:30].astype(np.int64), x[30:], y[30:].astype(np.int64),
                   [str(i) for i in range(10)])


@pytest.fixture
def fake_sections(monkeypatch):
    """One section named explore (so the config's explore parameters are its parameters)."""
    section = SimpleNamespace(NAME="explore", TITLE="Fake first steps", plan=_plan)
    monkeypatch.setattr("mnistlab.study.runner.SECTIONS", [section])
    CALLS.clear()
    return section


def _step_rows(outcome):
    """The stored timing rows of a study's steps, in plan order."""
    store = RunStore(outcome.folder, create=False)
    try:
        return store.step_rows([r.key for r in outcome.records])
    finally:
        store.close()


class Recorder:
    def __init__(self):
        self.events = []

    def section(self, title, n_steps):
        self.events.append(("section", title, n_steps))

    def step(self, name):
        self.events.append(("step", name))

    def advance(self, section=None):
        self.events.append(("advance",) if section is None else ("advance", section))

    def running(self):
        import contextlib

        return contextlib.nullcontext(self)


def test_each_step_gets_its_arguments_and_the_results_it_needs(tiny, fake_sections, tmp_path):
    config = build_config("full", {"explore": {"n_samples": 5}}, seed=4)
    progress = Recorder()
    outcome = run_study(tiny, config, tmp_path / "run", progress=progress)
    total = int(tiny.x_train[:5].sum())
    assert CALLS[:2] == [("count", 5, 4), ("add", total)]
    assert CALLS[2][:2] == ("combine", ["a", "b"])
    keys = [r.key for r in outcome.records]
    assert CALLS[2][2] == keys[2]  # files_key is the step's own key
    assert (tmp_path / "run" / "models" / f"combined-{keys[2]}.txt").is_file()
    assert [r.name for r in outcome.computed] == ["count", "add", "combine"]
    assert progress.events == [("section", "Fake first steps", 3),
                               ("step", "count"), ("advance",), ("step", "add"), ("advance",),
                               ("step", "combine"), ("advance",)]
    store = RunStore(tmp_path / "run", create=False)
    try:
        assert store.load_result(keys[2]).total == 2 * total + 1
        study = store.last_study()
        assert study["step_keys"] == keys and study["status"] == "done"
        assert study["context"]["seed"] == 4 and study["profile"] == "full"
        assert study["context"]["class_names"] == tiny.class_names
    finally:
        store.close()


def test_a_finished_step_is_never_recomputed(tiny, fake_sections, tmp_path):
    config = build_config("full")
    first = run_study(tiny, config, tmp_path / "run")
    CALLS.clear()
    again = run_study(tiny, config, tmp_path / "run")
    assert CALLS == [] and again.computed == []
    assert [r.key for r in again.records] == [r.key for r in first.records]
    assert all(r.cached and r.wall_s == 0.0 for r in again.records)
    assert again.study_id == first.study_id + 1
    # A changed argument recomputes its step and every step that reads it.
    CALLS.clear()
    changed = run_study(tiny, build_config("full", {"explore": {"n_samples": 3}}), tmp_path / "run")
    assert [r.name for r in changed.computed] == ["count", "add", "combine"]


def test_keys_follow_arguments_needs_and_data(tiny, fake_sections):
    base = plan_study(tiny, build_config("full"))
    assert len({p.key for p in base}) == 3
    assert base[1].needed_keys == {"counted": base[0].key}
    assert base[2].needed_keys == {"parts": {"a": base[0].key, "b": base[1].key}}
    reseeded = plan_study(tiny, build_config("full", seed=9))
    assert reseeded[0].key != base[0].key and reseeded[1].key != base[1].key
    import dataclasses

    other = dataclasses.replace(tiny, x_train=tiny.x_train[::-1].copy())
    assert [p.key for p in plan_study(other, build_config("full"))] != [p.key for p in base]
    assert [p.key for p in plan_study(tiny, build_config("full"))] == [p.key for p in base]


def test_a_bug_names_its_step_and_keeps_the_cause(tiny, fake_sections, tmp_path):
    fake_sections.plan = lambda data, params, seed, **_: [bind("boom", fails, params, seed)]
    with pytest.raises(StepFailed) as info:
        run_study(tiny, build_config("full"), tmp_path / "run")
    assert info.value.where == "explore.boom"
    assert str(info.value) == "explore.boom: ZeroDivisionError: a bug"
    assert isinstance(info.value.__cause__, ZeroDivisionError)
    store = RunStore(tmp_path / "run")  # the folder was released
    store.close()


def test_a_users_mistake_passes_through_unchanged(tiny, fake_sections, tmp_path):
    fake_sections.plan = lambda data, params, seed, **_: [bind("reject", rejects, params, seed)]
    with pytest.raises(DatasetError, match="the user's data is wrong"):
        run_study(tiny, build_config("full"), tmp_path / "run")


def test_only_the_sections_named_are_planned_and_an_unknown_one_names_them_all(
        tiny, fake_sections, monkeypatch):
    second = SimpleNamespace(NAME="unsupervised", TITLE="Fake second section",
                             plan=lambda data, params, seed, **_: [
                                 bind("count", count_pixels, params, seed, n_samples=3)])
    monkeypatch.setattr("mnistlab.study.runner.SECTIONS", [fake_sections, second])
    with pytest.raises(ConfigError) as info:
        plan_study(tiny, build_config("full"), ["clasic"])
    assert str(info.value) == "sections: unknown section 'clasic' (use explore, unsupervised)"
    assert [(p.section, p.step.name) for p in plan_study(tiny, build_config("full"),
                                                         ["unsupervised"])] == [
        ("unsupervised", "count")]


def test_each_section_plans_with_the_engine_the_study_resolved():
    from mnistlab.models.fitting import resolve_engine

    config = build_config("quick")
    engines = {item.step.arguments["engine"]
               for item in plan_study(load_dataset("digits"), config)
               if "engine" in item.step.arguments}
    assert engines == {resolve_engine(config.engine).name}


def test_the_study_records_its_profile(tiny, fake_sections, tmp_path):
    from mnistlab.study.runner import run_studies

    quick = run_study(tiny, build_config("quick"), tmp_path / "quick", profile="quick")
    [full] = run_studies([(tiny, build_config("full"), tmp_path / "full")])
    for outcome, profile in ((quick, "quick"), (full, "full")):
        store = RunStore(outcome.folder, create=False)
        try:
            assert store.study(outcome.study_id)["profile"] == profile
        finally:
            store.close()


def test_the_study_runs_on_the_executor_it_is_given(tiny, fake_sections, tmp_path):
    from mnistlab.engine.executors import InProcess

    class Counting(InProcess):
        graphs = 0

        def run(self, graphs, progress):
            Counting.graphs += len(graphs)
            return super().run(graphs, progress)

    outcome = run_study(tiny, build_config("full"), tmp_path / "run", executor=Counting())
    assert Counting.graphs == 1 and len(outcome.computed) == 3


def test_unknown_sections_are_a_config_error(tiny, fake_sections):
    with pytest.raises(ConfigError, match="sections: unknown section 'clasic' \\(use explore\\)"):
        plan_study(tiny, build_config("full"), ["clasic"])
    assert plan_study(tiny, build_config("full"), []) == []
    assert len(plan_study(tiny, build_config("full"), ["explore"])) == 3


def test_call_step_computes_uncached_as_the_study_binds(tiny, tmp_path):
    CALLS.clear()
    params = build_config("full", {"explore": {"n_samples": 2}}).explore
    result = call_step(count_pixels, tiny, params, seed=5)
    assert CALLS == [("count", 2, 5)] and result.total == int(tiny.x_train[:2].sum())
    made = call_step(combine, tiny, params, parts={"x": result}, files_dir=tmp_path / "m",
                     files_key="abc")
    assert made.total == result.total and (tmp_path / "m" / "combined-abc.txt").is_file()


def test_bind_fills_each_argument_from_the_right_place():
    params = build_config("full").explore
    step = bind("count", count_pixels, params, 3)
    assert step.arguments == {"n_samples": params.n_samples, "seed": 3}
    step = bind("count", count_pixels, params, 3, n_samples=99)
    assert step.arguments == {"n_samples": 99, "seed": 3}  # given wins over params
    assert step.qualname == "test_runner.count_pixels"
    with pytest.raises(TypeError, match="no value for add_one's argument 'counted'"):
        bind("add", add_one, params, 0)
    with pytest.raises(TypeError, match=r"takes no argument\(s\) \['bogus'\]"):
        bind("count", count_pixels, params, 0, bogus=1)
    with_files = bind("combine", combine, params, 0, needs={"parts": {}}, files=True)
    assert with_files.arguments == {} and with_files.files
    with pytest.raises(TypeError, match="no value for combine's argument 'files_dir'"):
        bind("combine", combine, params, 0, needs={"parts": {}})


def test_a_step_with_a_damaged_arrays_file_is_recomputed_and_the_progress_says_why(
        tiny, fake_sections, tmp_path):
    config = build_config("full")
    first = run_study(tiny, config, tmp_path / "run")
    (tmp_path / "run" / "arrays" / f"{first.records[0].key}.npz").write_bytes(b"damaged")
    CALLS.clear()
    progress = Recorder()
    again = run_study(tiny, config, tmp_path / "run", progress=progress)
    assert [r.name for r in again.computed] == ["count"]  # same result: "add" keeps its own
    assert ("step", "count (recomputing: it has a missing or corrupt arrays file)") in \
        progress.events
    assert ("step", "add") in progress.events


def test_the_outcome_and_the_stored_context_say_what_ran(tiny, fake_sections, tmp_path):
    first = run_study(tiny, build_config("full"), tmp_path / "run", profile="quick")
    assert first.folder == tmp_path / "run" and first.study_id == 1
    again = run_study(tiny, build_config("full"), str(tmp_path / "run"))
    assert again.folder == tmp_path / "run" and again.study_id == 2
    assert [(r.section, r.name, r.cached) for r in again.records] == [
        ("explore", "count", True), ("explore", "add", True), ("explore", "combine", True)]
    store = RunStore(tmp_path / "run", create=False)
    try:
        context = store.last_study()["context"]
    finally:
        store.close()
    machine = context.pop("machine")
    assert context == {"seed": 0, "class_names": tiny.class_names, "image_shape": [6, 6],
                       "source": tiny.source, "digits": False}
    assert machine["usable_cores"] >= 1 and machine["libraries"]["numpy"] == np.__version__


def test_only_the_sections_asked_for_run(tiny, fake_sections, tmp_path):
    outcome = run_study(tiny, build_config("full"), tmp_path / "run", sections=[])
    assert outcome.records == [] and CALLS == []


def test_a_recomputed_step_is_logged_with_its_reason(tiny, fake_sections, tmp_path, caplog):
    import logging

    first = run_study(tiny, build_config("full"), tmp_path / "run")
    (tmp_path / "run" / "arrays" / f"{first.records[1].key}.npz").unlink()
    with caplog.at_level(logging.INFO, logger="mnistlab.engine.executors"):
        run_study(tiny, build_config("full"), tmp_path / "run")
    assert [r.getMessage() for r in caplog.records] == [
        "explore.add has a missing or corrupt arrays file; recomputing it",
        "computing explore.add"]


def fits_with(data, *, engine):
    return Count(1, np.zeros(1))


def test_the_stored_step_says_which_function_and_library_computed_it(tiny, fake_sections,
                                                                     tmp_path):
    fake_sections.plan = lambda data, params, seed, **_: [
        bind("fit", fits_with, params, seed, engine="sklearnex")]
    outcome = run_study(tiny, build_config("full"), tmp_path / "run")
    store = RunStore(tmp_path / "run", create=False)
    try:
        [row] = store.step_rows([outcome.records[0].key])
    finally:
        store.close()
    assert (row["fn"], row["engine"], row["own_process"]) == (
        f"{__name__}.fits_with", "sklearnex", False)


def test_a_step_called_alone_names_itself_in_a_binding_error():
    params = build_config("full").explore
    with pytest.raises(TypeError, match="step add_one: no value for add_one's argument"):
        call_step(add_one, None, params)


def test_a_step_called_alone_uses_the_studys_default_seed(tiny):
    CALLS.clear()
    call_step(count_pixels, tiny, build_config("full").explore)
    assert CALLS == [("count", build_config("full").explore.n_samples, 0)]


@pytest.mark.slow
def test_a_bug_on_a_dask_worker_gives_the_same_one_line_error(tiny, fake_sections, tmp_path):
    pytest.importorskip("distributed")
    import sys

    import cloudpickle

    from mnistlab.engine.cluster import DaskExecutor, dask_client

    fake_sections.plan = lambda data, params, seed, **_: [bind("boom", fails, params, seed)]
    with pytest.raises(StepFailed) as here:
        run_study(tiny, build_config("full"), tmp_path / "here")
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the failing step is here
    try:
        with dask_client(workers=1) as client, pytest.raises(StepFailed) as there:
            run_study(tiny, build_config("full"), tmp_path / "there", executor=DaskExecutor(client))
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    assert str(there.value) == str(here.value) == "explore.boom: ZeroDivisionError: a bug"
    assert isinstance(there.value.__cause__, ZeroDivisionError)


def _handed_over(folder, study_id, keys):
    """What a section_done callback is given, with what the store says of each step then
    (None: stored, nothing wrong)."""
    store = RunStore(folder, create=False)
    try:
        return study_id, {name: [store.stored_problem(k) for k in section_keys]
                          for name, section_keys in keys.items()}
    finally:
        store.close()


@pytest.mark.slow
def test_on_a_dask_cluster_each_section_is_handed_over_once_its_steps_are_stored(
        tiny, fake_sections, tmp_path, monkeypatch):
    """As in this process: the CLI's background drawing starts on a section while the workers
    compute the next (it drew every figure after the last step before)."""
    pytest.importorskip("distributed")
    import sys

    import cloudpickle

    from mnistlab.engine.cluster import DaskExecutor, dask_client

    later = SimpleNamespace(NAME="unsupervised", TITLE="Fake second section",
                            plan=lambda data, params, seed, **_: [
                                bind("recount", count_pixels, params, seed, n_samples=5)])
    fake_sections.plan = lambda data, params, seed, **_: [bind("count", count_pixels, params, seed)]
    monkeypatch.setattr("mnistlab.study.runner.SECTIONS", [fake_sections, later])
    handed = []

    def section_done(study_id, keys):
        handed.append(_handed_over(tmp_path / "run", study_id, keys))

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the steps are defined here
    try:
        with dask_client(workers=1) as client:
            executor = DaskExecutor(client)
            outcome = run_study(tiny, build_config("full"), tmp_path / "run", executor=executor,
                                section_done=section_done)
            again = run_study(tiny, build_config("full"), tmp_path / "run", executor=executor,
                              section_done=section_done)
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    assert [r.name for r in outcome.computed] == ["count", "recount"] and not again.computed
    assert handed == [(outcome.study_id, {"explore": [None]}),  # stored, nothing wrong
                      (outcome.study_id, {"unsupervised": [None]}),
                      (again.study_id, {"explore": [None], "unsupervised": [None]})]


MEETING = {}


def meets_the_other(data, *, n_samples, label):
    """Waits for the other one-core step: fails unless both compute at the same time."""
    import threading

    from threadpoolctl import threadpool_info

    from mnistlab.engine.measure import cores_given

    MEETING["barrier"].wait(timeout=20)
    blas = {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}
    thread = threading.current_thread()
    CALLS.append((label, thread is threading.main_thread(), blas, thread.name, thread.daemon,
                  _openmp_effective_n_threads(), cores_given()))
    if label == "broken":
        raise ZeroDivisionError("a bug beside another step")
    if label == "slow":
        time.sleep(2.5)  # longer than two of the executor's waits between looks at its threads
    return Count(n_samples, np.zeros(1))


def uses_every_core(data, *, counted):
    import threading

    from threadpoolctl import threadpool_info

    CALLS.append(("alone", threading.current_thread() is threading.main_thread(),
                  {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}))
    return counted


def _meeting(fake_sections, monkeypatch, *, cores, labels, after=None):
    """A section of one-core steps named ``labels`` that wait for each other (on ``cores``
    cores), then ``after`` = (name, the step it reads), a step for every core."""
    import threading

    monkeypatch.setattr("mnistlab.engine.executors.usable_cores", lambda: cores)
    MEETING["barrier"] = threading.Barrier(2 if cores > 1 and len(labels) > 1 else 1)
    CALLS.clear()
    fake_sections.plan = lambda data, params, seed, **_: [
        *(bind(label, meets_the_other, params, seed, one_core=True, label=label)
          for label in labels),
        *([bind(after[0], uses_every_core, params, seed, needs={"counted": after[1]})]
          if after else [])]


def test_one_core_steps_compute_side_by_side_and_others_alone(tiny, fake_sections, tmp_path,
                                                              monkeypatch):
    from threadpoolctl import threadpool_info

    blas_before = {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}
    _meeting(fake_sections, monkeypatch, cores=2, labels=["left", "right"],
             after=("after", "left"))
    outcome = run_study(tiny, build_config("full"), tmp_path / "run")
    assert [r.name for r in outcome.computed] == ["left", "right", "after"]
    beside = {label: (main, blas) for label, main, blas, *_ in CALLS[:2]}
    assert beside["left"] == beside["right"] == (False, {1})  # in threads, BLAS on one thread
    # named after their step, and daemons: Ctrl-C does not wait for a step's thread
    assert sorted(c[3:5] for c in CALLS[:2]) == [("mnistlab left", True),
                                                 ("mnistlab right", True)]
    # each on one OpenMP thread, and told it has one core
    assert [c[5:] for c in CALLS[:2]] == [(1, 1), (1, 1)]
    assert CALLS[2] == ("alone", True, blas_before)  # here, once both ended, every BLAS thread
    rows = _step_rows(outcome)
    assert {r["name"]: r["beside"] for r in rows} == {"left": ["right"], "right": ["left"],
                                                      "after": []}
    # each step's measured cost is stored and recorded, beside or alone
    assert all(r["peak_rss_mb"] > 0 and r["rss_delta_mb"] >= 0 for r in rows)
    assert all(r.cached is False and r.wall_s == row["wall_s"] > 0
               for r, row in zip(outcome.records, rows, strict=True))


def _two_cores_and_a_meeting_place(monkeypatch, tmp_path):
    monkeypatch.setattr("mnistlab.engine.executors.usable_cores", lambda: 2)
    meet_at = tmp_path / "meet"
    meet_at.mkdir()
    return meet_at


def waits_for(data, *, n_samples, meet_at, label, wait_for=None, pause=0.0):
    """Says it started (a file named ``label``); then, if ``wait_for``, waits until that step
    has started too."""
    from pathlib import Path

    Path(meet_at, label).touch()
    time.sleep(pause)
    deadline = time.monotonic() + 10
    while wait_for and not Path(meet_at, wait_for).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{wait_for} did not start while {label} computed")
        time.sleep(0.01)
    return Count(1, np.zeros(1))


def test_a_core_a_step_beside_frees_goes_at_once_to_the_next_one_core_step(
        tiny, fake_sections, tmp_path, monkeypatch):
    meet_at = _two_cores_and_a_meeting_place(monkeypatch, tmp_path)
    fake_sections.plan = lambda data, params, seed, **_: [
        bind("first", waits_for, params, seed, one_core=True, meet_at=str(meet_at),
             label="first", pause=0.3),
        bind("waiting", waits_for, params, seed, one_core=True, meet_at=str(meet_at),
             label="waiting", wait_for="third"),
        bind("third", waits_for, params, seed, one_core=True, meet_at=str(meet_at),
             label="third")]
    # "third" starts once "first" ends, while "waiting" (which waits for it) still computes
    outcome = run_study(tiny, build_config("full"), tmp_path / "run")
    assert [r.name for r in outcome.computed] == ["first", "waiting", "third"]
    rows = _step_rows(outcome)  # two cores, never three steps at once
    assert {r["name"]: r["beside"] for r in rows} == {
        "first": ["waiting"], "waiting": ["first", "third"], "third": ["waiting"]}


def test_a_step_failing_beside_another_loses_nothing_that_finished(tiny, fake_sections, tmp_path,
                                                                  monkeypatch):
    _meeting(fake_sections, monkeypatch, cores=2, labels=["broken", "fine"],
             after=("never", "fine"))
    with pytest.raises(StepFailed, match="explore.broken: ZeroDivisionError: a bug beside"):
        run_study(tiny, build_config("full"), tmp_path / "run")
    assert sorted(c[0] for c in CALLS) == ["broken", "fine"]  # "never" did not start
    store = RunStore(tmp_path / "run", create=False)
    try:  # the study stays unfinished: no report reads it as done
        assert store.study(1)["status"] != "done" and store.study(1)["step_keys"] == []
    finally:
        store.close()
    _meeting(fake_sections, monkeypatch, cores=2, labels=["fine"])
    again = run_study(tiny, build_config("full"), tmp_path / "run")
    assert CALLS == [] and again.records[0].cached  # "fine" was saved although "broken" failed


def test_a_step_whose_thread_ends_without_a_result_fails_instead_of_hanging(
        tiny, fake_sections, tmp_path, monkeypatch):
    import queue
    import threading

    from mnistlab.engine import executors

    compute_beside = executors._compute_beside

    def loses_its_result(item, data, inputs, finished):  # a bug of the executor, not the step
        compute_beside(item, data, inputs,
                       queue.Queue() if item.step.name == "lost" else finished)

    monkeypatch.setattr(executors, "_compute_beside", loses_its_result)

    def study_raises(labels, after=None):
        _meeting(fake_sections, monkeypatch, cores=2, labels=labels, after=after)
        raised = []

        def study():
            try:
                run_study(tiny, build_config("full"), tmp_path / "run")
            except StepFailed as exc:
                raised.append(str(exc))

        runner = threading.Thread(target=study, daemon=True)  # the test fails, not hangs
        runner.start()
        runner.join(60)
        assert not runner.is_alive(), "the study waits for ever for a step that ended"
        return raised

    assert study_raises(["lost"]) == [
        "explore.lost: RuntimeError: its thread ended without a result"]
    # beside a step that outlasts two looks at the threads: that one is waited for, and saved
    assert study_raises(["lost", "slow"], after=("never", "slow")) == [
        "explore.lost: RuntimeError: its thread ended without a result"]
    assert sorted(c[0] for c in CALLS) == ["lost", "slow"]  # "never" did not start
    monkeypatch.setattr(executors, "_compute_beside", compute_beside)
    _meeting(fake_sections, monkeypatch, cores=2, labels=["slow"])
    again = run_study(tiny, build_config("full"), tmp_path / "run")
    assert CALLS == [] and again.records[0].cached  # "slow", still computing then, was saved


def test_on_one_core_every_step_computes_here_one_after_another(tiny, fake_sections, tmp_path,
                                                                monkeypatch):
    _meeting(fake_sections, monkeypatch, cores=1, labels=["left", "right"])
    run_study(tiny, build_config("full"), tmp_path / "run")
    assert [c[:2] for c in CALLS] == [("left", True), ("right", True)]


@dataclass
class Where:
    pid: int
    idle_priority: bool
    blas: list
    openmp: int  # the threads of scikit-learn's OpenMP runtime, loaded during the step
    n_train: int  # the training images it was handed: the data reached the other process
    process: str  # its process's name
    daemon: bool  # a daemon: the study's end never waits for it
    fresh: bool  # spawned (imported this module anew), not forked from a process with threads


# Set by the tests in this process; a spawned process imports this module anew and sees None.
PARENT_MARK: int | None = None


def in_a_process_of_its_own(data, *, n_samples, meet_at, exit_status=None, linger=0.0):
    """Meets the step computing in the study's process (through files: it is another
    process), then says where it computed."""
    import multiprocessing
    import os
    import time
    from pathlib import Path

    from threadpoolctl import threadpool_info

    if exit_status is not None:
        os._exit(exit_status)  # as a crash would
    Path(meet_at, "apart").touch()
    deadline = time.monotonic() + 20
    while not Path(meet_at, "here").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    if not Path(meet_at, "here").exists():
        raise TimeoutError("the study's own steps did not compute at the same time")
    time.sleep(linger)  # still computing when the study's own steps have ended
    if n_samples == 0:
        raise ZeroDivisionError("a bug in a process of its own")
    from sklearn.utils._openmp_helpers import _openmp_effective_n_threads

    return Where(os.getpid(), os.sched_getscheduler(0) == os.SCHED_IDLE,
                 sorted({lib["num_threads"] for lib in threadpool_info()
                         if lib["user_api"] == "blas"}), _openmp_effective_n_threads(),
                 len(data.y_train), multiprocessing.current_process().name,
                 multiprocessing.current_process().daemon, PARENT_MARK is None)


def meets_the_apart(data, *, meet_at):
    import os
    import time
    from pathlib import Path

    deadline = time.monotonic() + 20
    while not Path(meet_at, "apart").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    Path(meet_at, "here").touch()
    CALLS.append(("here", os.getpid(), Path(meet_at, "apart").exists()))
    time.sleep(0.2)  # ends after the other: the cost table must see them overlap
    return Count(1, np.zeros(1))


def _apart(fake_sections, monkeypatch, meet_at, *, cores=2, **apart):
    monkeypatch.setattr("mnistlab.engine.executors.usable_cores", lambda: cores)
    monkeypatch.setattr(f"{__name__}.PARENT_MARK", os.getpid())
    meet_at.mkdir(exist_ok=True)
    CALLS.clear()
    fake_sections.plan = lambda data, params, seed, **_: [
        bind("apart", in_a_process_of_its_own, params, seed, own_process=True,
             meet_at=str(meet_at), **apart),
        bind("here", meets_the_apart, params, seed, meet_at=str(meet_at))]


def test_a_step_that_holds_the_gil_computes_in_a_process_of_its_own_beside_the_rest(
        tiny, fake_sections, tmp_path, monkeypatch, caplog):
    _apart(fake_sections, monkeypatch, tmp_path / "meet", linger=0.5)
    progress = Recorder()
    with caplog.at_level(logging.INFO, logger="mnistlab"):
        outcome = run_study(tiny, build_config("full"), tmp_path / "run", progress=progress)
    assert "computing explore.apart" in caplog.text and "recomputing" not in caplog.text
    assert CALLS == [("here", os.getpid(), True)]  # here, while "apart" computed
    store = RunStore(tmp_path / "run", create=False)
    try:
        apart = store.load_result(outcome.records[0].key)
        rows = store.step_rows([r.key for r in outcome.records])
    finally:
        store.close()
    assert apart.pid != os.getpid() and apart.idle_priority and set(apart.blas) <= {1}
    assert apart.openmp == 1 and apart.n_train == len(tiny.y_train) > 0
    assert apart.process == "mnistlab apart" and apart.daemon and apart.fresh
    assert [(r["name"], r["own_process"], r["beside"]) for r in rows] == [
        ("apart", True, ["here"]), ("here", False, ["apart"])]
    assert ("advance", "Fake first steps") in progress.events  # its section's bar, whenever
    assert ("step", "waiting for apart") in progress.events  # once nothing else computes
    progress = Recorder()
    again = run_study(tiny, build_config("full"), tmp_path / "run", progress=progress)
    assert CALLS == [("here", os.getpid(), True)] and all(r.cached for r in again.records)
    assert ("advance", "Fake first steps") in progress.events  # found done, its bar still moves
    # a graph without titles (the engine's own default) names each section by its name,
    # for a step apart found done and for one computed
    for folder, computed in (("run", 0), ("other run", 1)):
        store, progress = RunStore(tmp_path / folder), Recorder()
        try:
            run_here(StudyGraph(store, tiny, plan_study(tiny, build_config("full"))), progress)
        finally:
            store.close()
        assert ("section", "explore", 2) in progress.events
        assert ("advance", "explore") in progress.events and len(CALLS) == 1 + computed


def test_a_step_failing_in_its_own_process_names_itself_and_loses_nothing(
        tiny, fake_sections, tmp_path, monkeypatch):
    _apart(fake_sections, monkeypatch, tmp_path / "meet", n_samples=0)
    with pytest.raises(StepFailed, match="explore.apart: ZeroDivisionError: a bug in a process"):
        run_study(tiny, build_config("full"), tmp_path / "run")
    assert [c[0] for c in CALLS] == ["here"]
    store = RunStore(tmp_path / "run", create=False)
    try:  # what finished beside it was saved
        assert store.load_result(plan_study(tiny, build_config("full"))[1].key).total == 1
    finally:
        store.close()


def a_users_mistake_apart(data, *, meet_at):
    raise ConfigError("unsupervised.k: not a number")


def test_a_step_here_is_measured_by_sampling_not_by_the_process_high_water_mark(
        tiny, fake_sections, tmp_path):
    from mnistlab.engine.measure import process_peak_mb

    np.ones(300 * 2**20 // 8).sum()  # a high-water mark well above what this process holds
    high_water = process_peak_mb()
    outcome = run_study(tiny, build_config("full"), tmp_path / "run")
    rows = _step_rows(outcome)
    assert all(0 < r["peak_rss_mb"] < high_water - 200 for r in rows)


def test_a_users_mistake_in_a_process_of_its_own_passes_through_unchanged(
        tiny, fake_sections, tmp_path, monkeypatch):
    monkeypatch.setattr("mnistlab.engine.executors.usable_cores", lambda: 2)
    fake_sections.plan = lambda data, params, seed, **_: [
        bind("apart", a_users_mistake_apart, params, seed, own_process=True,
             meet_at=str(tmp_path))]
    with pytest.raises(ConfigError) as info:
        run_study(tiny, build_config("full"), tmp_path / "run")
    assert type(info.value) is ConfigError and str(info.value) == "unsupervised.k: not a number"


def test_a_process_that_dies_is_a_failure_of_its_step(tiny, fake_sections, tmp_path,
                                                     monkeypatch):
    _apart(fake_sections, monkeypatch, tmp_path / "meet", exit_status=3)
    (tmp_path / "meet" / "apart").touch()  # the dying step never says it started
    with pytest.raises(StepFailed, match="explore.apart: RuntimeError: its process exited "
                                         "with status 3"):
        run_study(tiny, build_config("full"), tmp_path / "run")


def test_on_one_core_a_step_of_its_own_process_computes_here_in_plan_order(
        tiny, fake_sections, tmp_path, monkeypatch):
    import os

    _apart(fake_sections, monkeypatch, tmp_path / "meet", cores=1)
    (tmp_path / "meet" / "here").touch()  # "apart" computes first and alone: nothing to meet
    outcome = run_study(tiny, build_config("full"), tmp_path / "run")
    store = RunStore(tmp_path / "run", create=False)
    try:
        assert store.load_result(outcome.records[0].key).pid == os.getpid()
    finally:
        store.close()


def test_each_section_is_handed_over_once_all_its_steps_are_stored(
        tiny, fake_sections, tmp_path, monkeypatch):
    """The CLI draws its figures then: the first section while the second's step still
    computes apart (that step waits for the file the call writes), the second once it ends."""
    meet_at = tmp_path / "meet"
    meet_at.mkdir()
    (meet_at / "apart").touch()
    monkeypatch.setattr("mnistlab.engine.executors.usable_cores", lambda: 2)
    fake_sections.plan = lambda data, params, seed, **_: [
        bind("count", count_pixels, params, seed)]
    waiting = SimpleNamespace(NAME="unsupervised", TITLE="Fake second section",
                              plan=lambda data, params, seed, **_: [
                                  bind("apart", in_a_process_of_its_own, params, seed,
                                       own_process=True, meet_at=str(meet_at), n_samples=5)])
    monkeypatch.setattr("mnistlab.study.runner.SECTIONS", [fake_sections, waiting])
    handed = []

    def section_done(study_id, keys):
        handed.append(_handed_over(tmp_path / "run", study_id, keys))
        (meet_at / "here").touch()  # lets "apart" end

    outcome = run_study(tiny, build_config("full"), tmp_path / "run",
                        section_done=section_done)
    assert handed == [(outcome.study_id, {"explore": [None]}),  # stored, nothing wrong
                      (outcome.study_id, {"unsupervised": [None]})]
    assert [r.name for r in outcome.computed] == ["count", "apart"]


def test_a_study_whose_later_section_fails_is_not_recorded_as_done(
        tiny, fake_sections, tmp_path, monkeypatch):
    fake_sections.plan = lambda data, params, seed, **_: [
        bind("count", count_pixels, params, seed)]
    failing = SimpleNamespace(NAME="unsupervised", TITLE="Fake second section",
                              plan=lambda data, params, seed, **_: [
                                  bind("boom", fails, params, seed, n_samples=5)])
    monkeypatch.setattr("mnistlab.study.runner.SECTIONS", [fake_sections, failing])
    handed = []
    with pytest.raises(StepFailed, match="unsupervised.boom"):
        run_study(tiny, build_config("full"), tmp_path / "run",
                  section_done=lambda study_id, keys: handed.append(keys))
    assert [list(keys) for keys in handed] == [["explore"]]  # the first one was handed over
    store = RunStore(tmp_path / "run", create=False)
    try:  # but the study is not finished: no report reads it as done
        assert store.study(1)["status"] != "done" and store.study(1)["step_keys"] == []
    finally:
        store.close()


def holds_a_core(data, *, meet_at):
    """Computes apart until the study's own steps are done."""
    from pathlib import Path

    Path(meet_at, "apart").touch()
    _wait_for(Path(meet_at, "right.done"), "the steps here did not end")
    return Count(1, np.zeros(1))


def once_apart_runs(data, *, meet_at, label):
    from pathlib import Path

    _wait_for(Path(meet_at, "apart"), "the step apart did not start")
    time.sleep(0.3)  # long enough for two such steps to overlap, if both were started
    Path(meet_at, f"{label}.done").touch()
    return Count(1, np.zeros(1))


def test_a_core_a_step_apart_holds_is_not_offered_to_a_one_core_step(
        tiny, fake_sections, tmp_path, monkeypatch):
    meet_at = _two_cores_and_a_meeting_place(monkeypatch, tmp_path)
    fake_sections.plan = lambda data, params, seed, **_: [
        bind("apart", holds_a_core, params, seed, own_process=True, meet_at=str(meet_at)),
        *(bind(label, once_apart_runs, params, seed, one_core=True, meet_at=str(meet_at),
               label=label) for label in ("left", "right"))]
    outcome = run_study(tiny, build_config("full"), tmp_path / "run")
    rows = _step_rows(outcome)
    # two cores: one for the step apart, one for the one-core steps here, one after the other
    assert {r["name"]: r["beside"] for r in rows} == {
        "apart": ["left", "right"], "left": ["apart"], "right": ["apart"]}


def test_a_step_apart_starts_once_the_results_it_needs_are_stored(tiny, fake_sections,
                                                                 tmp_path, monkeypatch):
    monkeypatch.setattr("mnistlab.engine.executors.usable_cores", lambda: 2)
    fake_sections.plan = lambda data, params, seed, **_: [
        bind("count", count_pixels, params, seed),
        bind("add", add_one, params, seed, own_process=True, needs={"counted": "count"})]
    outcome = run_study(tiny, build_config("full"), tmp_path / "run")
    store = RunStore(tmp_path / "run", create=False)
    try:
        added = store.load_result(outcome.records[1].key)
    finally:
        store.close()
    n_samples = build_config("full").explore.n_samples
    assert added.total == int(tiny.x_train[:n_samples].sum()) + 1  # computed apart, from "count"


def _wait_for(path, what):
    import time

    deadline = time.monotonic() + 20
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    if not path.exists():
        raise TimeoutError(what)


def ends_once_the_long_step_runs(data, *, meet_at):
    from pathlib import Path

    _wait_for(Path(meet_at, "long"), "the long step never started")
    return Count(1, np.zeros(1))


def waits_for_the_second_step(data, *, meet_at):
    from pathlib import Path

    Path(meet_at, "long").touch()
    _wait_for(Path(meet_at, "second"), "the core the step apart freed was not used")
    return Count(2, np.zeros(1))


def starts_second(data, *, meet_at):
    from pathlib import Path

    Path(meet_at, "second").touch()
    return Count(3, np.zeros(1))


def test_the_core_a_step_apart_frees_goes_to_the_next_one_core_step_at_once(
        tiny, fake_sections, tmp_path, monkeypatch):
    """While the step apart computes, one-core steps compute one at a time; once it ends,
    the next starts beside the one still computing (it waited for that one to end before,
    which here never comes: the long step waits for the second)."""
    meet_at = _two_cores_and_a_meeting_place(monkeypatch, tmp_path)
    fake_sections.plan = lambda data, params, seed, **_: [
        bind("apart", ends_once_the_long_step_runs, params, seed, own_process=True,
             meet_at=str(meet_at)),
        bind("long", waits_for_the_second_step, params, seed, one_core=True,
             meet_at=str(meet_at)),
        bind("second", starts_second, params, seed, one_core=True, meet_at=str(meet_at))]
    outcome = run_study(tiny, build_config("full"), tmp_path / "run")
    assert [r.name for r in outcome.computed] == ["apart", "long", "second"]


def test_a_script_without_a_main_guard_fails_its_step_instead_of_hanging(tmp_path):
    """The embedding's process re-runs such a script and dies as it starts; the study must
    report that, not wait for ever on the data it was sending it."""
    import subprocess
    import sys

    script = tmp_path / "no_guard.py"
    script.write_text("from mnistlab import build_config, load_dataset, run_study\n"
                      "run_study(load_dataset('mnist-5k'), build_config('quick'), "
                      f"{str(tmp_path / 'run')!r}, profile='quick')\n")
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                            timeout=90, cwd=tmp_path)
    assert result.returncode == 1
    assert ("StepFailed: unsupervised.embedding: RuntimeError: its process exited with status 1"
            in result.stderr), result.stderr[-2000:]


@pytest.mark.parametrize("profile", ["quick", "full"])
def test_every_planned_step_has_a_key_of_its_own(profile):
    data = load_dataset("digits")
    planned = plan_study(data, build_config(profile))
    assert len({item.key for item in planned}) == len(planned) > 50


def test_a_key_that_misses_an_argument_fails_the_plan(monkeypatch):
    """The sweep points then share one stored result: said before anything runs."""
    import hashlib

    from mnistlab.engine.step import Step

    def key_without_arguments(self, fingerprint, needed_keys):
        return hashlib.sha256(f"{self.qualname}{fingerprint}{needed_keys}".encode()).hexdigest()

    monkeypatch.setattr(Step, "key", key_without_arguments)
    with pytest.raises(RuntimeError,
                       match=r"kmeans_sweep:1 and \S+kmeans_sweep:2 have the same key \w+: "
                             r"a step's key must follow every argument it receives$"):
        plan_study(load_dataset("digits"), build_config("quick"))


class _Unpicklable(Exception):
    def __reduce__(self):
        raise TypeError("cannot pickle this")


def raises_unpicklable(data, *, n_samples):
    raise _Unpicklable("held a lock")


def threads_seen(data, *, n_samples):
    import os

    from sklearn.utils._openmp_helpers import _openmp_effective_n_threads

    # (not BLAS's thread limit: it is the process's, which the threads other tests of this
    # process left behind may set back while this step runs; a spawned process starts clean.
    # OpenMP's is this thread's own.)
    return (os.environ["NUMBA_NUM_THREADS"], os.environ["OMP_NUM_THREADS"], n_samples,
            _openmp_effective_n_threads(), len(data.y_train))


def raises_a_users_mistake(data, *, n_samples):
    try:
        int("x")
    except ValueError as exc:
        raise ConfigError("unsupervised.k: not a number") from exc


@pytest.mark.parametrize("fn, expected", [
    (threads_seen, None), (fails, ZeroDivisionError("a bug")),
    (raises_unpicklable, RuntimeError("_Unpicklable: held a lock")),
    (raises_a_users_mistake, ConfigError("unsupervised.k: not a number"))])
def test_a_step_computed_apart_sends_back_its_result_or_its_cause(tiny, monkeypatch, fn,
                                                                  expected):
    """What a step's own process runs (``_compute_apart``), here in a thread (its idle
    priority is then the thread's only): one thread for the libraries the step imports, and
    the result, the cause of a failure, or the text of an exception that cannot travel, sent
    back."""
    import os
    import threading
    from multiprocessing import Pipe

    from mnistlab.engine.executors import _compute_apart
    from mnistlab.engine.measure import process_peak_mb
    from mnistlab.engine.plan import PlannedStep

    monkeypatch.setenv("NUMBA_NUM_THREADS", "8")
    monkeypatch.setenv("OMP_NUM_THREADS", "8")
    here, there = Pipe()
    item = PlannedStep("section", bind("apart", fn, None, 0, n_samples=3), "key", {})
    np.ones(300 * 2**20 // 8).sum()  # a high-water mark well above what this process holds now
    high_water = process_peak_mb()
    here.send((tiny, {}))
    worker = threading.Thread(target=_compute_apart, args=(item, there))
    worker.start()
    worker.join(60)
    outcome, cost = here.recv()
    if expected is None:
        assert outcome == ("1", "1", 3, 1, len(tiny.y_train))
        # in a process of its own, its peak is the process's high-water mark, not a sample
        assert cost.wall_s >= 0 and cost.peak_mb >= high_water and cost.ended > 0
        assert isinstance(cost.delta_mb, float) and cost.delta_mb >= 0
    else:
        assert type(outcome) is type(expected) and str(outcome) == str(expected)
        assert cost is None
    assert os.environ["NUMBA_NUM_THREADS"] == "1"  # set for the libraries the step imports
