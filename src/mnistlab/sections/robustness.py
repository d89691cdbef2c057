"""Beyond the test set: every trained model scored on corrupted test images and on digits
from someone else's hand (issue 35). The seed asks whether a model generalises; its test
accuracy answers only for images drawn the way the training images were.

Two kinds of steps, each a pure function of its declared inputs:

- ``variants``: a stratified sample of the test images under each corruption of
  :data:`mnistlab.data.corrupt.CORRUPTIONS` and, for digit datasets, the digits typed in the
  system's fonts and scikit-learn's 8x8 digits, prepared as ``mnistlab predict`` prepares a
  user's image;
- ``score:MODEL``: one trained model (the classic section's or the deep section's step, whose
  result names its saved file) predicting every variant.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ..data.corrupt import CORRUPTIONS, corrupt, font_digits, small_digits, system_fonts
from ..data.datasets import Dataset
from ..data.prepare import stratified_indices
from ..engine.step import Step, bind
from ..models.persistence import load_pipeline
from . import classic, deep

NAME = "robustness"
TITLE = "5. Beyond the test set: how each model holds up"

CorruptionName = Literal[tuple(CORRUPTIONS)]  # type: ignore[valid-type]


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")

    images: int = Field(
        2000, ge=50, description="test images each corruption is applied to: a stratified "
        "sample, the same images for every corruption and every model (0.01 of accuracy is "
        "about its standard error at 1,000 images and 90 %)")
    corruptions: list[CorruptionName] = Field(
        default_factory=lambda: list(CORRUPTIONS), description="the corruptions applied")
    fonts: bool = Field(True, description="digit datasets: score the digits 0-9 typed in "
                        "each of the system's fonts (/usr/share/fonts) at three stroke widths")
    small_digits: bool = Field(True, description="digit datasets: score scikit-learn's 1,797 "
                               "8x8 digits, brought to the dataset's image size")
    ood_fit: int = Field(10_000, ge=100, description="training images (a stratified sample) "
                         "the out-of-distribution score's PCA is fitted on")
    ood_components: int = Field(50, ge=2, description="its PCA's components: the score is "
                                "an image's distance to their space")
    ood_quantile: float = Field(0.99, gt=0.5, lt=1, description="the flag's threshold: this "
                                "quantile of the clean test images' scores (so 1 - it of them "
                                "are flagged)")


QUICK = {"images": 500}


@dataclass
class Variants:
    """The images every model is scored on beyond the test set."""

    test_index: np.ndarray  # the test images corrupted (a stratified sample), ascending
    labels: np.ndarray  # their labels
    clean: np.ndarray  # the sampled test images, (images, H, W) uint8
    corruptions: list[str]
    severities: list[str]
    corrupted: np.ndarray  # (corruptions, images, H, W) uint8
    font_images: np.ndarray  # (n, H, W) uint8: empty when not digits or no font
    font_labels: np.ndarray
    font_index: np.ndarray  # into font_names
    font_strokes: np.ndarray  # extra stroke width, pixels at the rendering size
    font_names: list[str]
    small_images: np.ndarray  # scikit-learn's 8x8 digits brought to the image size
    small_labels: np.ndarray
    n_test: int = 0  # the test set's size (0: a run stored before it was kept)


@dataclass
class ModelRobustness:
    """One model's predictions on every variant (accuracies follow from :class:`Variants`)."""

    name: str
    section: str  # "classic" or "deep"
    clean_pred: np.ndarray  # (images,) on the sampled test images, uncorrupted
    corrupted_pred: np.ndarray  # (corruptions, images) int16
    font_pred: np.ndarray
    small_pred: np.ndarray
    predict_s: float  # to predict every variant
    trained_with: str  # a network's training augmentations ("" when none, or a classic model)


@dataclass
class Familiarity:
    """How far an image lies from the training images: its distance to the space of a PCA of
    the training pixels (what the components cannot rebuild of it, RMS over the pixels, in
    grey levels). Above ``threshold`` (the ``quantile`` of the clean test images' distances)
    an image is flagged as unlike the images the models were trained on.

    Chosen on mnist-5k's corrupted test images at the 0.99 quantile, against the distance to
    the 5th nearest training image (in that PCA's space, in the pixels, in whitened
    components, each also with this distance added) and the Mahalanobis distance to the
    nearest class mean: this one flagged 52 % of the Gaussian-noised images (the others at
    most 10 %), 49 % of the shifted (others at most 41 %), 100 % of the impulse-noised and
    32 % of the thickened (others up to 98 % and 40 %). None flags blurred, shrunk or faded
    images: they lie closer to the training images than many test images do."""

    mean: np.ndarray  # (pixels,) float32, grey levels
    components: np.ndarray  # (n_components, pixels) float32
    n_fit: int  # the training images the PCA was fitted on
    quantile: float
    threshold: float
    test_scores: np.ndarray  # the clean test sample's distances (float32)
    corrupted_flagged: np.ndarray  # (corruptions,) share of each corruption's images flagged
    font_flagged: float  # nan where there are none
    small_flagged: float


def familiarity_scores(images: np.ndarray, familiarity: Familiarity) -> np.ndarray:
    """The distance of each image (uint8, (n, H, W)) to the training images (see
    :class:`Familiarity`), in grey levels: plain numpy, so that the server computes it
    without scikit-learn. The components are orthonormal: the part a PCA cannot rebuild has
    the squared norm of the image less that of its projection."""
    f = familiarity
    centred = np.asarray(images, dtype=np.float32).reshape(len(images), -1) - f.mean
    z = centred @ f.components.T
    outside = np.einsum("ij,ij->i", centred, centred) - np.einsum("ij,ij->i", z, z)
    return np.sqrt(np.maximum(outside, 0.0) / centred.shape[1]).astype(np.float32)


def familiarity(data: Dataset, variants: Variants, fit_images: int, n_components: int,
                quantile: float, seed: int) -> Familiarity:
    """The out-of-distribution score's PCA and threshold, and what it flags among the
    variants."""
    from sklearn.decomposition import PCA

    picked = np.sort(stratified_indices(data.y_train, fit_images, seed))
    train = data.x_train[picked].reshape(len(picked), -1).astype(np.float32)
    pca = PCA(min(n_components, train.shape[1], len(train)), svd_solver="randomized",
              random_state=seed).fit(train)
    empty = np.zeros(0, np.float32)
    f = Familiarity(pca.mean_.astype(np.float32), pca.components_.astype(np.float32),
                    len(picked), quantile, 0.0, empty, empty, float("nan"), float("nan"))
    f.test_scores = familiarity_scores(variants.clean, f)
    f.threshold = float(np.quantile(f.test_scores, quantile))

    def share(images: np.ndarray) -> float:
        return float((familiarity_scores(images, f) > f.threshold).mean()) if len(images) \
            else float("nan")

    f.corrupted_flagged = np.array([share(x) for x in variants.corrupted], dtype=np.float64)
    f.font_flagged, f.small_flagged = share(variants.font_images), share(variants.small_images)
    return f


def variants(data: Dataset, images: int, corruptions: list[str], fonts: tuple,
             small_digits_wanted: bool, seed: int) -> Variants:
    """Corrupted test images, font digits and 8x8 digits (see the module's docstring)."""
    index = np.sort(stratified_indices(data.y_test, images, seed))
    x = data.x_test[index]
    corrupted = np.stack([corrupt(name, x, seed) for name in corruptions]) if corruptions \
        else np.zeros((0, *x.shape), np.uint8)
    shape = tuple(data.image_shape)
    typed = font_digits(fonts if data.digits else (), shape)
    if data.digits and small_digits_wanted and shape != (8, 8):
        small_x, small_y = small_digits(shape)
    else:
        small_x, small_y = np.zeros((0, *shape), np.uint8), np.zeros(0, np.int64)
    return Variants(index, data.y_test[index].astype(np.int64), x, list(corruptions),
                    [CORRUPTIONS[c].severity for c in corruptions], corrupted, *typed[:4],
                    typed[4], small_x, small_y, len(data.y_test))


def _load(model, files_dir: Path):
    """The model a classic or deep step saved, from its file in the run folder."""
    if isinstance(model, classic.ModelResult):
        return load_pipeline(files_dir.parent / model.model_file, model.versions,
                             classic.TRUSTED_TYPES)
    from ..models.deep import TorchClassifier

    return TorchClassifier.load(files_dir.parent / model.weights_file)


def trained_with(model) -> str:
    """The augmentations a network was trained with, as the report states them."""
    spec = getattr(model, "spec", None) or {}
    said = [f"shifts up to {spec['augment_shift']} px"] if spec.get("augment_shift") else []
    return ", ".join(said + list(spec.get("augment") or []))


def score_model(data: Dataset, variants: Variants, model, files_dir: Path,
                files_key: str) -> ModelRobustness:
    """One model's predictions on every variant."""
    estimator = _load(model, files_dir)
    started = time.perf_counter()

    def predict(x: np.ndarray) -> np.ndarray:
        if not len(x):
            return np.zeros(0, np.int16)
        return np.asarray(estimator.predict(x)).astype(np.int16)

    corrupted = variants.corrupted
    flat = predict(corrupted.reshape(-1, *corrupted.shape[2:]))
    result = ModelRobustness(
        model.name, "classic" if isinstance(model, classic.ModelResult) else "deep",
        clean_pred=model.test_pred[variants.test_index].astype(np.int16),
        corrupted_pred=flat.reshape(corrupted.shape[:2]),
        font_pred=predict(variants.font_images), small_pred=predict(variants.small_images),
        predict_s=0.0, trained_with=trained_with(model))
    result.predict_s = time.perf_counter() - started
    return result


def plan(data: Dataset, params: Params, seed: int, engine: str = "sklearn",
         earlier: Mapping[str, Step] | None = None) -> list[Step]:
    fonts = system_fonts() if data.digits and params.fonts else ()
    steps = [bind("variants", variants, params, seed, fonts=fonts,
                  small_digits_wanted=params.small_digits),
             bind("familiarity", familiarity, params, seed, needs={"variants": "variants"},
                  fit_images=params.ood_fit, n_components=params.ood_components,
                  quantile=params.ood_quantile)]
    for qualified, step in (earlier or {}).items():
        if step.fn in (classic.fit_model, deep.train_model):
            name = step.arguments["name"]
            steps.append(bind(f"score:{name}", score_model, params, seed, files=True,
                              needs={"variants": "variants", "model": qualified}))
    return steps
