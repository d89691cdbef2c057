"""The typed study context every renderer receives beside the section's results."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ..config import StudyConfig
from ..errors import StoreError


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
    from ..datasets import DIGIT_DATASETS

    stored = study["context"]
    return StudyContext(study["dataset"], study["fingerprint"], study["profile"],
                        study["started"], config.seed, names or [], config, study["config"],
                        study["step_keys"],
                        digits=stored.get("digits", study["dataset"] in DIGIT_DATASETS),
                        image_shape=tuple(stored.get("image_shape", ())),
                        machine=stored.get("machine", {}))
