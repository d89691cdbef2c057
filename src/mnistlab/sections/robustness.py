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


def _sample(y: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` indices of ``y`` (all when it has fewer), stratified by class, ascending."""
    if n >= len(y):
        return np.arange(len(y))
    from sklearn.model_selection import train_test_split

    picked, _ = train_test_split(np.arange(len(y)), train_size=n, stratify=y,
                                 random_state=seed)
    return np.sort(picked)


def variants(data: Dataset, images: int, corruptions: list[str], fonts: tuple,
             small_digits_wanted: bool, seed: int) -> Variants:
    """Corrupted test images, font digits and 8x8 digits (see the module's docstring)."""
    index = _sample(data.y_test, images, seed)
    x = data.x_test[index]
    corrupted = np.stack([corrupt(name, x, seed) for name in corruptions]) if corruptions \
        else np.zeros((0, *x.shape), np.uint8)
    shape = tuple(data.image_shape)
    typed = font_digits(fonts, shape) if data.digits and fonts else font_digits((), shape)
    if data.digits and small_digits_wanted and shape != (8, 8):
        small_x, small_y = small_digits(shape)
    else:
        small_x, small_y = np.zeros((0, *shape), np.uint8), np.zeros(0, np.int64)
    return Variants(index, data.y_test[index].astype(np.int64), x, list(corruptions),
                    [CORRUPTIONS[c].severity for c in corruptions], corrupted, *typed[:4],
                    typed[4], small_x, small_y)


def _load(model, files_dir: Path):
    """The model a classic or deep step saved, from its file in the run folder."""
    if isinstance(model, classic.ModelResult):
        return load_pipeline(files_dir.parent / model.model_file, model.versions,
                             classic.TRUSTED_TYPES)
    from ..models.deep import TorchClassifier

    return TorchClassifier.load(files_dir.parent / model.weights_file)


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
        predict_s=0.0)
    result.predict_s = time.perf_counter() - started
    return result


def plan(data: Dataset, params: Params, seed: int, engine: str = "sklearn",
         earlier: Mapping[str, Step] | None = None) -> list[Step]:
    fonts = system_fonts() if data.digits and params.fonts else ()
    steps = [bind("variants", variants, params, seed, fonts=fonts,
                  small_digits_wanted=params.small_digits)]
    for qualified, step in (earlier or {}).items():
        if step.fn in (classic.fit_model, deep.train_model):
            name = step.arguments["name"]
            steps.append(bind(f"score:{name}", score_model, params, seed, files=True,
                              needs={"variants": "variants", "model": qualified}))
    return steps
