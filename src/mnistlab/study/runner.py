"""The study runner: plans every section's steps and hands them to an executor, which computes
those not done yet and stores their results. It knows which sections a study has, not where
their steps compute."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from ..core.errors import ConfigError
from ..core.machine import machine_card
from ..data.datasets import Dataset
from ..engine.executors import InProcess
from ..engine.plan import (
    Executor,
    NullProgress,
    PlannedStep,
    Progress,
    SectionHandover,
    StepRecord,
    StudyGraph,
    per_argument,
)
from ..engine.step import Step
from ..engine.store import RunStore
from ..models.fitting import resolve_engine
from ..sections import SECTIONS
from .config import StudyConfig, config_toml

log = logging.getLogger(__name__)


@dataclass
class StudyOutcome:
    folder: Path
    study_id: int
    records: list[StepRecord] = field(default_factory=list)

    @property
    def computed(self) -> list[StepRecord]:
        return [r for r in self.records if not r.cached]


def plan_study(data: Dataset, config: StudyConfig,
               sections: list[str] | None = None) -> list[PlannedStep]:
    """Every step of every section (or of ``sections``) with its key, before anything is
    computed: a configuration that cannot work on this data fails here, in one line, not after
    three sections ran."""
    known = [s.NAME for s in SECTIONS]
    unknown = sorted(set(sections or []) - set(known))
    if unknown:
        raise ConfigError(f"sections: unknown section {unknown[0]!r} (use {', '.join(known)})")
    engine = resolve_engine(config.engine)
    planned = []
    earlier: dict[str, Step] = {}  # "section/step" -> step, of the sections planned so far
    qualified_keys: dict[str, str] = {}
    for section in SECTIONS:
        if sections is not None and section.NAME not in sections:
            continue
        keys: dict[str, str] = {}
        steps = section.plan(data, getattr(config, section.NAME), config.seed,
                             engine=engine.name, earlier=dict(earlier))
        for step in steps:
            needed = per_argument(step.needs, partial(_key_of, keys, qualified_keys))
            keys[step.name] = step.key(data.fingerprint, needed)
            planned.append(PlannedStep(section.NAME, step, keys[step.name], needed))
        for step in steps:
            earlier[f"{section.NAME}/{step.name}"] = step
            qualified_keys[f"{section.NAME}/{step.name}"] = keys[step.name]
    _check_unique_keys(planned)
    return planned


def _key_of(own: dict[str, str], earlier: dict[str, str], name: str) -> str:
    """The key of the step a step needs: one of its section's, or ``"section/step"`` of an
    earlier section's."""
    return earlier[name] if "/" in name else own[name]


def _check_unique_keys(planned: list[PlannedStep]) -> None:
    """Two steps of one plan with one key would share one stored result (a report table
    showing one row four times): a step whose key misses an argument it receives. A bug of
    the plan, said before anything runs."""
    seen: dict[str, PlannedStep] = {}
    for item in planned:
        other = seen.setdefault(item.key, item)
        if other is not item:
            raise RuntimeError(f"{other.where} and {item.where} have the same key {item.key}: "
                               "a step's key must follow every argument it receives")


def run_study(data: Dataset, config: StudyConfig, out: str | Path, *, profile: str = "full",
              sections: list[str] | None = None, progress: Progress | None = None,
              executor: Executor | None = None,
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
        Run only these sections (``explore``, ``quality``, ``unsupervised``, ``classic``,
        ``deep``).
    progress : object, optional
        Receives ``section``/``step``/``advance`` calls (the CLI's rich display).
    executor : Executor, optional
        Computes the steps: by default :class:`~mnistlab.engine.executors.InProcess` (in this
        process, section after section, the one-core steps side by side); a
        :class:`~mnistlab.engine.cluster.DaskExecutor` runs them as Dask tasks on a cluster.
    section_done : callable, optional
        Called as ``section_done(study_id, {section: its step keys})`` as soon as every step
        of those sections is stored, while the study goes on (the CLI hands them to a
        process that draws their figures meanwhile); it must return at once.

    Returns
    -------
    StudyOutcome
        The run folder, the study id, and which steps were computed or found done.
    """
    return run_studies([(data, config, Path(out))], profile=profile, executor=executor,
                       progress=progress, sections=sections, section_done=section_done)[0]


def _context(data: Dataset, config: StudyConfig) -> dict:
    """What the report needs of the study besides its results, recorded when it starts."""
    return {"seed": config.seed, "class_names": data.class_names,
            "image_shape": list(data.image_shape), "source": data.source,
            "digits": data.digits, "machine": machine_card()}


class _StudyDone:
    """A study's callback for its executor: hands each finished section over
    (``section_done``) and records the study as done in its run folder the moment its last
    step is stored, so that a study finished before a later one fails stays finished."""

    def __init__(self, store: RunStore, planned: list[PlannedStep], study_id: int,
                 section_done: Callable[[int, dict[str, list[str]]], None] | None):
        self.store, self.study_id = store, study_id
        self.keys = [item.key for item in planned]
        self.handover = SectionHandover(planned, study_id, section_done)
        self.recorded = False

    def __call__(self, records: dict[str, StepRecord]) -> None:
        self.handover(records)
        if not self.recorded and all(key in records for key in self.keys):
            self.store.record_study_steps(self.study_id, self.keys, "done")
            self.recorded = True


def run_studies(jobs: list[tuple[Dataset, StudyConfig, Path]], *, profile: str = "full",
                executor: Executor | None = None, progress: Progress | None = None,
                sections: list[str] | None = None,
                section_done: Callable[[int, dict[str, list[str]]], None] | None = None
                ) -> list[StudyOutcome]:
    """Several studies ``(data, config, run folder)``, planned first (a configuration that
    cannot work fails before anything runs), then handed to ``executor`` together: in
    process, one after another; on a Dask cluster, every step of every study in one graph, so
    that the workers share them. See :func:`run_study` for the other parameters."""
    executor = executor or InProcess()
    progress = progress or NullProgress()
    titles = {section.NAME: section.TITLE for section in SECTIONS}
    plans = [plan_study(data, config, sections) for data, config, _ in jobs]
    graphs: list[StudyGraph] = []
    outcomes: list[StudyOutcome] = []
    try:
        for (data, config, out), planned in zip(jobs, plans):
            store = RunStore(out)
            graphs.append(StudyGraph(store, data, planned, titles))
            study_id = store.begin_study(data.name, data.fingerprint, profile,
                                         config_toml(config), _context(data, config))
            outcomes.append(StudyOutcome(Path(out), study_id))
            graphs[-1].stored = _StudyDone(store, planned, study_id, section_done)
        with progress.running():
            done = executor.run(graphs, progress)
        for graph, outcome, records in zip(graphs, outcomes, done):
            outcome.records = [records[item.key] for item in graph.planned]
    finally:
        for graph in graphs:
            graph.store.close()
    return outcomes
