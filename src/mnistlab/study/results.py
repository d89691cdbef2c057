"""A study read back from its run folder: its typed context and every step's result, recomputing
nothing. What the report, the leaderboard, the model catalog and the server read."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ..core.errors import StoreError
from ..data.datasets import DIGIT_DATASETS
from ..engine.store import RunStore
from .config import StudyConfig


@dataclass
class StudyContext:
    """What a renderer knows of the study besides its results: typed, never parsed from text."""

    dataset: str
    fingerprint: str
    profile: str
    started: float
    seed: int
    class_names: list[str]
    config: StudyConfig
    config_toml: str  # as the user can save it and pass it back with --config
    step_keys: list[str]
    digits: bool = False  # handwritten digits: words about strokes and writing apply
    image_shape: tuple[int, ...] = ()
    machine: dict = field(default_factory=dict)  # where it ran: CPU, cores, library versions

    @property
    def mnist_like(self) -> bool:
        """28x28 handwritten digits: the seed's MNIST numbers are comparable with this run's."""
        return self.digits and tuple(self.image_shape) == (28, 28)


def study_context(study: dict, results: dict, folder: Path) -> StudyContext:
    try:
        config = StudyConfig.model_validate(tomllib.loads(study["config"]))
    except (tomllib.TOMLDecodeError, ValueError) as exc:
        raise StoreError(f"{folder}: the stored configuration was written by another version "
                         f"of mnistlab ({str(exc).splitlines()[0]}); rerun the study") from None
    names = study["context"].get("class_names")
    if names is None and "summary" in results.get("explore", {}):  # folders of mnistlab 0.1
        names = results["explore"]["summary"].class_names
    stored = study["context"]
    return StudyContext(study["dataset"], study["fingerprint"], study["profile"],
                        study["started"], config.seed, names or [], config, study["config"],
                        study["step_keys"],
                        digits=stored.get("digits", study["dataset"] in DIGIT_DATASETS),
                        image_shape=tuple(stored.get("image_shape", ())),
                        machine=stored.get("machine", {}))


def section_results(store: RunStore, keys: list[str]) -> dict[str, dict]:
    results: dict[str, dict] = {}
    for row in store.step_rows(keys):
        results.setdefault(row["section"], {})[row["name"]] = store.load_result(row["key"])
    return results


@dataclass
class StudyResults:
    """The last finished study of a run folder: its context, every step's typed result (by
    section, then step name, e.g. ``results["classic"]["model:svc-rbf"]``) and its cost.

    Examples
    --------
    >>> study = load_study("runs/mnist-5k")  # doctest: +SKIP
    >>> study.results["classic"]["best"].name  # doctest: +SKIP
    'svc-rbf'
    """

    folder: Path
    context: StudyContext
    results: dict[str, dict[str, object]]
    cost: list[dict]

def load_study(folder: str | Path, sections: set[str] | None = None) -> StudyResults:
    """The results of the last finished study in ``folder`` (of ``sections`` only, if given),
    recomputing nothing."""
    folder = Path(folder)
    store = RunStore(folder, create=False)
    try:
        stored = store.last_study()
        cost = store.step_rows(stored["step_keys"])
        wanted = [r["key"] for r in cost if sections is None or r["section"] in sections]
        if "class_names" not in stored["context"]:  # folders of mnistlab 0.1: from the summary
            wanted += [r["key"] for r in cost if r["name"] == "summary"]
        results = section_results(store, list(dict.fromkeys(wanted)))
        context = study_context(stored, results, folder)
    finally:
        store.close()
    return StudyResults(folder, context, results, cost)
