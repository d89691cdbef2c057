"""The models a study trained, saved without pickle and loaded back for use.

Classic models are scikit-learn pipelines from raw images, saved with skops (scikit-learn's
documented secure format: loading builds only the types it is told to trust); networks are
safetensors files with their preprocessing. :func:`load_model` returns either behind one
interface that takes raw uint8 images of the dataset's shape.

Examples
--------
>>> from mnistlab import load_model
>>> model = load_model("runs/mnist-5k", "best")  # doctest: +SKIP
>>> model.predict(images)  # uint8, shape (n, 28, 28)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import ModelLoadError
from ..core.files import sha256_file
from ..models.persistence import load_pipeline
from ..sections.classic import MODELS, ModelResult
from ..sections.classic import TRUSTED_TYPES as CLASSIC_TRUSTED_TYPES
from ..sections.deep import TrainResult, in_seed_order
from ..sections.robustness import Familiarity
from .results import StudyContext, StudyResults, load_study

log = logging.getLogger("mnistlab")

@dataclass
class TrainedModel:
    """A model of a study, ready to use on raw images.

    ``predict`` and ``predict_proba`` (or ``decision_function`` for models without
    probabilities: SVMs) take uint8 images of shape ``(n, H, W)`` or one image ``(H, W)``.
    """

    name: str
    section: str  # "classic" or "deep"
    label: str
    class_names: list[str]
    image_shape: tuple[int, int]
    test_acc: float
    val_acc: float
    file: Path
    estimator: Any  # a scikit-learn Pipeline or a TorchClassifier
    digits: bool = False  # trained on handwritten digits: a user's image is prepared as MNIST's

    @property
    def has_proba(self) -> bool:
        return hasattr(self.estimator, "predict_proba")

    def _images(self, images) -> np.ndarray:
        x = np.asarray(images)
        if x.ndim == 2:
            x = x[None]
        if x.ndim != 3 or x.shape[1:] != tuple(self.image_shape):
            h, w = self.image_shape
            raise ValueError(f"{self.name}: expected images of shape (n, {h}, {w}) or "
                             f"({h}, {w}), got {x.shape}")
        if x.dtype != np.uint8:
            if not np.issubdtype(x.dtype, np.number) or x.min() < 0 or x.max() > 255 or \
                    not np.array_equal(x, np.round(x)):
                raise ValueError(f"{self.name}: expected grey levels, integers in 0..255")
            x = x.astype(np.uint8)
        return x

    def predict(self, images) -> np.ndarray:
        """Class indices (into ``class_names``)."""
        return np.asarray(self.estimator.predict(self._images(images))).astype(np.int64)

    def predict_proba(self, images) -> np.ndarray:
        if not self.has_proba:
            raise AttributeError(f"{self.name} gives no probabilities; use decision_function")
        return np.asarray(self.estimator.predict_proba(self._images(images)), dtype=np.float64)

    def decision_function(self, images) -> np.ndarray:
        scores = np.asarray(self.estimator.decision_function(self._images(images)))
        return scores if scores.ndim == 2 else np.stack([-scores, scores], axis=1)

    def scores(self, images) -> tuple[str, np.ndarray]:
        """``("probability", p)`` where the model gives them, else ``("score", s)``."""
        if self.has_proba:
            return "probability", self.predict_proba(images)
        return "score", self.decision_function(images)


@dataclass
class ModelEntry:
    """What the run folder says of one trained model, before loading it: one row of the
    leaderboard."""

    name: str
    section: str  # "classic" or "deep"
    label: str
    test_acc: float
    val_acc: float  # on the section's own held-out part of the training set
    train_acc: float | None
    n_train: int
    representation: str
    fit_s: float
    predict_s_per_10k: float
    peak_mb: float
    threads: int | None
    params: dict[str, Any]
    file: str  # relative to the run folder
    sha256: str
    versions: dict[str, str]
    engine: str  # the library that fitted it, with its version
    # the class it predicted for each test image (what the test accuracy counts)
    test_pred: np.ndarray | None = field(default=None, repr=False)


def _rank_key(entry: ModelEntry) -> float:
    return -entry.val_acc if not math.isnan(entry.val_acc) else math.inf


def model_entries(study: StudyResults) -> dict[str, ModelEntry]:
    """Every trained model of a loaded study (:func:`~mnistlab.study.results.load_study`), by
    name, ranked: highest validation accuracy first (each on its own held-out split of the
    training set; the test set only scores, never chooses). A model without a validation
    score comes last; a tie keeps the study's order (classic models, then networks in the
    seed's order)."""
    entries = []
    cores = study.context.machine.get("usable_cores")
    for result in study.results.get("classic", {}).values():
        if isinstance(result, ModelResult) and result.model_file:
            row = result.row
            entries.append(ModelEntry(
                result.name, "classic", MODELS[result.name].label, row["test_acc"],
                row["val_acc"], row["train_acc"], row["n_fit"], result.representation,
                row["fit_s"], row["predict_s_per_10k"], row["peak_mb"], cores,
                result.params or {"repr": result.estimator}, result.model_file,
                result.model_sha256, result.versions, result.fitted_by, result.test_pred))
    trained = [r for r in study.results.get("deep", {}).values() if isinstance(r, TrainResult)]
    for result in in_seed_order(trained):
        entries.append(ModelEntry(
            result.name, "deep", result.name, result.test_acc, result.val_acc,
            (result.history.get("train_acc") or [None])[-1], result.n_fit,
            "pixels (standardised)", result.train_s, result.infer_s_per_10k, result.peak_mb,
            result.threads, {**result.spec, "n_params": result.n_params,
                             "epochs_run": result.epochs_run},
            result.weights_file, result.weights_sha256, {}, "PyTorch", result.test_pred))
    return {entry.name: entry for entry in sorted(entries, key=_rank_key)}


def best_name(ranked: Iterable[str]) -> str:
    """The model of highest validation accuracy: the first name of :func:`model_entries`'
    ranking (its dict, or any names listed in its order)."""
    return next(iter(ranked))


def resolve_names(names: list[str] | None, ranked: list[str]) -> list[str]:
    """Model names as a user gives them (names, ``best``, ``all``; none or an empty one: all)
    resolved against the ``ranked`` names of a study, each once, in the order asked. An
    unknown name raises KeyError with that name; the caller says it its own way."""
    wanted: list[str] = []
    for name in names or ["all"]:
        if name in ("all", ""):
            wanted += ranked
        elif name == "best":
            wanted.append(best_name(ranked))
        elif name in ranked:
            wanted.append(name)
        else:
            raise KeyError(name)
    return list(dict.fromkeys(wanted))


@dataclass
class ChosenModels:
    """The models a user named in a run folder, resolved against its last study but not loaded
    yet: what the images must look like is known before any model file is read."""

    run: Path
    entries: dict[str, ModelEntry]  # every saved model of the study, by name
    names: list[str]
    context: StudyContext

    @property
    def image_shape(self) -> tuple[int, int]:
        return tuple(self.context.image_shape)

    @property
    def digits(self) -> bool:
        return bool(self.context.digits)

    def load(self) -> list[TrainedModel]:
        """Each model, checked against the digest the study recorded, then loaded."""

        models = []
        for name in self.names:
            entry = self.entries[name]
            path = self.run / entry.file
            if not path.is_file():
                raise ModelLoadError(f"{path}: missing; rerun the study to save it again")
            if sha256_file(path) != entry.sha256:
                raise ModelLoadError(f"{path}: altered since the study saved it (digest "
                                     "differs); rerun the study to save it again")
            if entry.section == "classic":
                estimator = load_pipeline(path, entry.versions, CLASSIC_TRUSTED_TYPES)
            else:
                # torch is imported only when a network is loaded: `predict` names a missing
                # image before paying for it
                from ..models.deep import TorchClassifier

                estimator = TorchClassifier.load(path)
            models.append(TrainedModel(name, entry.section, entry.label,
                                       list(self.context.class_names), self.image_shape,
                                       entry.test_acc, entry.val_acc, path, estimator,
                                       self.digits))
        return models


def familiarity_reference(run: str | Path) -> Familiarity | None:
    """What tells how far an image lies from the training images of the study in ``run``
    (:func:`~mnistlab.sections.robustness.familiarity_scores`), when it ran the robustness
    section."""
    results = load_study(run, sections={"robustness"}).results.get("robustness", {})
    found = [r for r in results.values() if isinstance(r, Familiarity)]
    return found[0] if found else None


def choose_models(run: str | Path, names: list[str] | None = None) -> ChosenModels:
    """The models ``names`` (model names, ``best`` or ``all``; default all) of the last study
    in ``run``, without loading them: an unknown name fails here, in one line."""
    study = load_study(run, sections={"classic", "deep"})
    entries = model_entries(study)
    if not entries:
        raise ModelLoadError(f"{run}: this study saved no model (its classic and deep "
                             "sections did not run)")
    try:
        wanted = resolve_names(names, list(entries))
    except KeyError as unknown:
        raise ModelLoadError(f"no model {unknown.args[0]!r} in {run} (it has "
                             f"{', '.join(entries)}, best, all)") from None
    return ChosenModels(Path(run), entries, wanted, study.context)


def open_models(run: str | Path, names: list[str] | None = None) -> list[TrainedModel]:
    """The models ``names`` (model names, ``best`` or ``all``; default all) of the last study
    in ``run``, loaded and checked against the digests the study recorded."""
    return choose_models(run, names).load()


def load_model(run: str | Path, name: str = "best") -> TrainedModel:
    """One trained model of the study in ``run``: a model name (``svc-rbf``, ``cnn-fast``...)
    or ``best`` (highest validation accuracy)."""
    if name == "all":
        raise ValueError("load_model loads one model; use open_models(run, ['all'])")
    return open_models(run, [name])[0]
