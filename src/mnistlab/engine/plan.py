"""A study as a graph of planned steps, and what an executor gives back for each.

Every executor (:mod:`mnistlab.engine.executors`, :mod:`mnistlab.engine.cluster`) receives
:class:`StudyGraph` objects and returns a :class:`StepRecord` per step; how and where it
computes is its own business. Only the process that runs the executor writes the store.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from .step import Step
from .store import RunStore


@dataclass
class StepRecord:
    """One step of a study as an executor ran it: found done (``cached``) or computed."""

    section: str
    name: str
    key: str
    cached: bool
    wall_s: float


@dataclass
class PlannedStep:
    section: str
    step: Step
    key: str
    # argument -> key of the step whose result it receives (or label -> key, for a dict)
    needed_keys: dict[str, str | dict[str, str]]

    @property
    def needed(self) -> list[str]:
        """Keys of the steps whose results this step receives."""
        return [key for value in self.needed_keys.values()
                for key in ([value] if isinstance(value, str) else value.values())]

    @property
    def where(self) -> str:
        """``section.step``, as errors and logs name it."""
        return f"{self.section}.{self.step.name}"


def per_argument(needs: dict, lookup: Callable[[str], Any]) -> dict:
    """``lookup`` applied to each name of a step's ``needs`` (a name, or a dict of names)."""
    return {arg: lookup(names) if isinstance(names, str) else
            {label: lookup(name) for label, name in names.items()}
            for arg, names in needs.items()}


class Progress(Protocol):
    """What an executor tells the user as it goes (the CLI's rich display implements it)."""

    def section(self, title: str, n_steps: int) -> None: ...
    def step(self, name: str) -> None: ...
    def advance(self, section: str | None = None) -> None: ...
    def running(self) -> Any: ...


class NullProgress:
    """Tells nothing."""

    def section(self, title: str, n_steps: int) -> None: ...
    def step(self, name: str) -> None: ...
    def advance(self, section: str | None = None) -> None: ...

    @contextmanager
    def running(self):
        yield self


class SectionHandover:
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


@dataclass
class StudyGraph:
    """One study's planned steps, its store and data, handed to an executor.

    ``titles`` names each section for the progress display; ``stored`` is called with the
    records so far once the steps found done are counted and after each result is stored.
    """

    store: RunStore
    data: Any  # a Dataset
    planned: list[PlannedStep]
    titles: dict[str, str] = field(default_factory=dict)
    stored: Callable[[dict[str, StepRecord]], None] | None = None

    def notify(self, records: dict[str, StepRecord]) -> None:
        if self.stored is not None:
            self.stored(records)


class Executor(Protocol):
    """Computes the steps of each graph not done yet in its store; returns, per graph, the
    record of every planned step by key. A failure raises (finished steps stay stored)."""

    def run(self, graphs: list[StudyGraph], progress: Progress) -> list[dict[str, StepRecord]]:
        ...
