"""The study runner: plans every section's steps, runs those not done yet, stores the results.

Each step is timed and its peak resident memory sampled (:class:`~mnistlab.measure.Measured`).
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
        one after another in this process.

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
            section = None
            for item in planned if client is None else []:
                if item.section != section:
                    section = item.section
                    progress.section(titles[section],
                                     sum(p.section == section for p in planned))
                problem = store.stored_problem(item.key)
                progress.step(item.step.name if problem in (None, NOT_FINISHED) else
                              f"{item.step.name} (recomputing: it {problem})")
                outcome.records.append(_run_step(store, data, item, problem))
                progress.advance()
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


def _run_step(store: RunStore, data: Dataset, item: PlannedStep,
              problem: str | None) -> StepRecord:
    section, step, key = item.section, item.step, item.key
    if problem is None:
        return StepRecord(section, step.name, key, True, 0.0)
    if problem != NOT_FINISHED:
        log.info("%s.%s %s; recomputing it", section, step.name, problem)
    inputs = _per_argument(item.needed_keys, store.load_result)
    if step.files:
        inputs.update(files_dir=store.folder / "models", files_key=key)
    store.mark_running(key, section, step.name,
                       {"fn": step.qualname, "arguments": step.arguments})
    log.info("computing %s.%s", section, step.name)
    try:
        with Measured() as cost:
            result = step(data, **inputs)
    except MnistlabError:
        raise
    except Exception as exc:  # a bug: say which step, keep the original as the cause
        raise StepFailed(f"{section}.{step.name}", exc) from exc
    store.save_step(key, result, wall_s=cost.wall_s, peak_rss_mb=cost.peak_mb,
                    rss_delta_mb=cost.delta_mb)
    return StepRecord(section, step.name, key, False, cost.wall_s)
