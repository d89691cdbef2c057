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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import StoreError

if TYPE_CHECKING:  # the render package is imported only when a study is read
    from .render.context import StudyContext

log = logging.getLogger("mnistlab")

# skops trusts scikit-learn's estimators by itself; these are the other types a saved classic
# pipeline holds (our input preparation, our SVC, the trees inside forests and boosting). A
# file asking for anything else is refused.
TRUSTED_TYPES = frozenset({
    "mnistlab.pipeline.ImageInputs",
    "mnistlab.svc.SVC",
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
})


class ModelLoadError(StoreError):
    """A saved model is missing, altered, unknown, or cannot be loaded by these libraries."""


def library_versions() -> dict[str, str]:
    """The versions a saved model depends on, recorded beside it."""
    from importlib.metadata import version

    from . import __version__

    return {"mnistlab": __version__, "scikit-learn": version("scikit-learn"),
            "skops": version("skops"), "numpy": version("numpy")}


def save_pipeline(inputs, estimator, path: Path) -> Path:
    """``Pipeline([("inputs", inputs), ("model", estimator)])`` to ``path`` (skops), written
    whole or not at all."""
    import skops.io as sio
    from sklearn.pipeline import Pipeline

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    sio.dump(Pipeline([("inputs", inputs), ("model", estimator)]), tmp)
    tmp.replace(path)
    return path


def load_pipeline(path: Path, versions: dict[str, str] | None = None):
    """The pipeline saved at ``path``: refused in one line when it holds a type outside
    :data:`TRUSTED_TYPES` or cannot be read; a warning when scikit-learn's version differs."""
    import skops.io as sio

    try:
        untrusted = set(sio.get_untrusted_types(file=path))
    except Exception as exc:  # skops raises many kinds on a damaged file
        raise ModelLoadError(f"{path}: not a readable skops model ({type(exc).__name__}: "
                             f"{exc})") from None
    unknown = sorted(untrusted - TRUSTED_TYPES)
    if unknown:
        raise ModelLoadError(f"{path}: refused, it holds types mnistlab does not trust: "
                             f"{', '.join(unknown)}")
    saved_with = (versions or {}).get("scikit-learn")
    current = library_versions()["scikit-learn"]
    if saved_with and saved_with != current:
        log.warning("%s was saved with scikit-learn %s and is loaded with %s: its predictions "
                    "may differ from the report's", path.name, saved_with, current)
    try:
        return sio.load(path, trusted=sorted(untrusted))
    except Exception as exc:
        raise ModelLoadError(f"{path}: cannot be loaded with scikit-learn {current} "
                             f"({type(exc).__name__}: {exc}); rerun the study to refit it"
                             ) from None


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


def _deep_val_acc(result) -> float:
    """Validation accuracy of the weights kept: the epoch of least validation loss under early
    stopping, else the last."""
    acc, loss = result.history.get("val_acc") or [], result.history.get("val_loss") or []
    if not acc:
        return math.nan
    if result.spec.get("early_stopping") and loss:
        return float(acc[int(np.argmin(loss))])
    return float(acc[-1])


@dataclass
class ModelEntry:
    """What the run folder says of one trained model, before loading it."""

    name: str
    section: str
    label: str
    test_acc: float
    val_acc: float
    file: str
    sha256: str
    versions: dict[str, str]


def model_entries(study) -> dict[str, ModelEntry]:
    """Every saved model of a loaded study (``load_study``), by name."""
    from .sections.classic import MODELS

    entries = {}
    for step, result in study.results.get("classic", {}).items():
        if step.startswith("model:") and getattr(result, "model_file", None):
            entries[result.name] = ModelEntry(
                result.name, "classic", MODELS[result.name].label, result.row["test_acc"],
                result.row["val_acc"], result.model_file, result.model_sha256,
                result.versions)
    from .sections.deep import in_seed_order

    trained = [r for step, r in study.results.get("deep", {}).items() if step.startswith("train:")]
    for result in in_seed_order(trained):
        entries[result.name] = ModelEntry(
            result.name, "deep", result.name, result.test_acc, _deep_val_acc(result),
            result.weights_file, result.weights_sha256, {})
    return entries


def best_name(entries: dict[str, ModelEntry]) -> str:
    """The model of highest validation accuracy (each on its own held-out split of the
    training set; the test set never chooses)."""
    scored = {n: e.val_acc for n, e in entries.items() if not math.isnan(e.val_acc)}
    return max(scored or entries, key=lambda n: scored.get(n, -1.0))


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
        from .store import sha256_file

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
                estimator = load_pipeline(path, entry.versions)
            else:
                from .deep import TorchClassifier

                estimator = TorchClassifier.load(path)
            models.append(TrainedModel(name, entry.section, entry.label,
                                       list(self.context.class_names), self.image_shape,
                                       entry.test_acc, entry.val_acc, path, estimator,
                                       self.digits))
        return models


def choose_models(run: str | Path, names: list[str] | None = None) -> ChosenModels:
    """The models ``names`` (model names, ``best`` or ``all``; default all) of the last study
    in ``run``, without loading them: an unknown name fails here, in one line."""
    from .render import load_study

    study = load_study(run, sections={"classic", "deep"})
    entries = model_entries(study)
    if not entries:
        raise ModelLoadError(f"{run}: this study saved no model (its classic and deep "
                             "sections did not run)")
    wanted: list[str] = []
    for name in names or ["all"]:
        if name == "all":
            wanted += list(entries)
        elif name == "best":
            wanted.append(best_name(entries))
        elif name in entries:
            wanted.append(name)
        else:
            raise ModelLoadError(f"no model {name!r} in {run} (it has {', '.join(entries)}, "
                                 "best, all)")
    return ChosenModels(Path(run), entries, list(dict.fromkeys(wanted)), study.context)


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
