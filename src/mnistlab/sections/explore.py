"""Part 1 of the seed, "First steps": shapes, class balance, pixel statistics, sample images.

Also measures why a held-out test set matters (seed 1.2) instead of only saying it: a
1-nearest-neighbour classifier memorises its training images, so its training accuracy is
near 1.0 whatever it has learned; only held-out images show how it generalises.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ..data.datasets import Dataset
from ..data.prepare import stratified_subset
from ..engine.step import Step, bind

NAME = "explore"
TITLE = "1. First steps: the data"


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n_samples: int = Field(10, ge=1, le=100, description="random training images shown")
    holdout_train: int = Field(
        10_000, ge=10, description="training images the 1-NN memorisation demo fits on")
    holdout_eval: int = Field(
        2_000, ge=10, description="images per split the 1-NN demo is scored on")


QUICK = {"holdout_train": 2_000, "holdout_eval": 500}


@dataclass
class Summary:
    """Shapes, class balance and pixel statistics of both splits."""

    name: str
    source: str
    notes: list[str]
    class_names: list[str]
    train_shape: list[int]
    test_shape: list[int]
    dtype: str
    train_counts: list[int]
    test_counts: list[int]
    train_imbalance: float  # largest class count / smallest
    test_imbalance: float
    pixel_mean: dict[str, float]  # on the raw 0..255 scale, per split
    pixel_std: dict[str, float]
    uniform_chi2_p: dict[str, float]  # chi-square test of "all classes equally frequent"
    train_test_chi2_p: float  # chi-square test of "same class distribution in both splits"
    train_test_tv: float  # total-variation distance between the two class distributions


@dataclass
class Gallery:
    """Seeded sample of training images and the mean image of each class (train split)."""

    sample_indices: np.ndarray
    sample_images: np.ndarray
    sample_labels: np.ndarray
    class_means: np.ndarray  # float32 (n_classes, H, W)


@dataclass
class HoldoutDemo:
    """1-NN accuracy on images it memorised vs held-out images."""

    n_fit: int
    n_eval: int  # training images it is scored on (among those it was fitted on)
    train_accuracy: float
    test_accuracy: float
    n_test: int  # test images it is scored on (the test set may hold fewer than n_eval)


def pixel_statistics(images: np.ndarray, chunk: int = 1 << 22) -> tuple[float, float]:
    """Mean and standard deviation of all pixels, as ``np.std`` gives them.

    Sums in float64 over chunks: exact for 8-bit data, without the 8-bytes-per-pixel copy that
    ``np.std`` makes of the whole array (376 MB for MNIST's training set).
    """
    flat = images.reshape(-1)
    total = total_sq = 0.0
    for start in range(0, flat.size, chunk):
        block = flat[start:start + chunk].astype(np.float64)
        total += block.sum()
        total_sq += np.dot(block, block)
    mean = total / flat.size
    return float(mean), float(np.sqrt(max(total_sq / flat.size - mean * mean, 0.0)))


def class_counts(labels: np.ndarray, n_classes: int) -> np.ndarray:
    return np.bincount(labels, minlength=n_classes)


def imbalance_ratio(counts: np.ndarray) -> float:
    """Largest class count over smallest (inf when a class is empty)."""
    return float(counts.max() / counts.min()) if counts.min() > 0 else float("inf")


def summarize(data: Dataset) -> Summary:
    k = data.n_classes
    tr, te = class_counts(data.y_train, k), class_counts(data.y_test, k)
    stats_tr, stats_te = pixel_statistics(data.x_train), pixel_statistics(data.x_test)
    present = (tr + te) > 0
    table = np.stack([tr[present], te[present]])
    from scipy import stats  # here, not at import: `mnistlab report` never needs it

    chi2_p = float(stats.chi2_contingency(table)[1]) if present.sum() > 1 else 1.0
    p_tr, p_te = tr / tr.sum(), te / te.sum()
    return Summary(
        name=data.name, source=data.source, notes=data.notes, class_names=data.class_names,
        train_shape=list(data.x_train.shape), test_shape=list(data.x_test.shape),
        dtype=str(data.x_train.dtype), train_counts=tr.tolist(), test_counts=te.tolist(),
        train_imbalance=imbalance_ratio(tr), test_imbalance=imbalance_ratio(te),
        pixel_mean={"train": stats_tr[0], "test": stats_te[0]},
        pixel_std={"train": stats_tr[1], "test": stats_te[1]},
        uniform_chi2_p={"train": float(stats.chisquare(tr).pvalue),
                        "test": float(stats.chisquare(te).pvalue)},
        train_test_chi2_p=chi2_p,
        train_test_tv=float(0.5 * np.abs(p_tr - p_te).sum()),
    )


def gallery(data: Dataset, n_samples: int, seed: int) -> Gallery:
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(data.y_train), size=min(n_samples, len(data.y_train)),
                             replace=False))
    means = np.zeros((data.n_classes, *data.image_shape), dtype=np.float32)
    for c in range(data.n_classes):
        members = data.x_train[data.y_train == c]
        if len(members):
            means[c] = members.mean(axis=0, dtype=np.float32)
    return Gallery(idx, data.x_train[idx], data.y_train[idx], means)


def holdout_demo(data: Dataset, n_fit: int, n_eval: int, seed: int) -> HoldoutDemo:
    from sklearn.neighbors import KNeighborsClassifier

    x_fit, y_fit = stratified_subset(data.x_train, data.y_train, n_fit, seed)
    x_fit = x_fit.reshape(len(x_fit), -1).astype(np.float32)
    rng = np.random.default_rng(seed)
    seen = rng.choice(len(y_fit), size=min(n_eval, len(y_fit)), replace=False)
    x_te, y_te = stratified_subset(data.x_test, data.y_test, n_eval, seed)
    model = KNeighborsClassifier(n_neighbors=1, algorithm="brute").fit(x_fit, y_fit)
    train_acc = float(model.score(x_fit[seen], y_fit[seen]))
    test_acc = float(model.score(x_te.reshape(len(x_te), -1).astype(np.float32), y_te))
    return HoldoutDemo(len(y_fit), len(seen), train_acc, test_acc, len(y_te))


def plan(data: Dataset, params: Params, seed: int, engine: str = "sklearn",
         earlier: Mapping[str, Step] | None = None) -> list[Step]:
    return [
        bind("summary", summarize, params, seed),
        bind("gallery", gallery, params, seed),
        bind("holdout", holdout_demo, params, seed, n_fit=params.holdout_train,
             n_eval=params.holdout_eval),
    ]
