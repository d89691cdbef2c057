"""The typed study context every renderer receives beside the section's results."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
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


def study_context(study: dict, results: dict, folder: Path) -> StudyContext:
    try:
        config = StudyConfig.model_validate(tomllib.loads(study["config"]))
    except (tomllib.TOMLDecodeError, ValueError) as exc:
        raise StoreError(f"{folder}: the stored configuration was written by another version "
                         f"of mnistlab ({str(exc).splitlines()[0]}); rerun the study") from None
    names = study["context"].get("class_names")
    if names is None and "summary" in results.get("explore", {}):  # folders of mnistlab 0.1
        names = results["explore"]["summary"].class_names
    return StudyContext(study["dataset"], study["fingerprint"], study["profile"],
                        study["started"], config.seed, names or [], config, study["config"],
                        study["step_keys"])
