"""The data preparations every section shares: stratified subsets, pixels as model inputs, PCA
projections. One place for each, so that two sections never prepare the same data two ways.
"""

from __future__ import annotations

import numpy as np


def stratified_indices(y: np.ndarray, n: int | None, seed: int) -> np.ndarray:
    """The indices of at most ``n`` samples with the class proportions of ``y`` (in
    scikit-learn's shuffled order), each class at least once; all of them, in order, if n is
    None."""
    if n is None or n >= len(y):
        return np.arange(len(y))
    classes = np.unique(y)
    if n < len(classes):
        raise ValueError(f"a subset of {n} sample(s) cannot hold one of each of the "
                         f"{len(classes)} classes")
    single = np.isin(y, classes[np.bincount(np.searchsorted(classes, y)) == 1])
    if single.any():  # scikit-learn stratifies classes of two samples or more: these go in
        rest = np.flatnonzero(~single)
        return np.concatenate([np.flatnonzero(single),
                               rest[stratified_indices(y[rest], n - int(single.sum()), seed)]])
    rng = np.random.default_rng(seed)
    if len(y) - n < len(classes):  # scikit-learn's split needs one of each class left out too
        return np.sort(np.setdiff1d(np.arange(len(y)), _dropped(y, len(y) - n, rng)))
    from sklearn.model_selection import train_test_split

    picked, _ = train_test_split(np.arange(len(y)), train_size=n, stratify=y,
                                 random_state=seed)
    # Rounding gives a class of under 1/n of the samples no place; a model trained on such a
    # subset has never seen it. Each missing class takes a place of the most frequent one.
    for missing in np.setdiff1d(classes, y[picked]):
        values, counts = np.unique(y[picked], return_counts=True)
        place = rng.choice(np.flatnonzero(y[picked] == values[counts.argmax()]))
        picked[place] = rng.choice(np.flatnonzero(y == missing))
    return picked


def _dropped(y: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """``k`` random indices of the most frequent classes, one class at a time."""
    dropped: list[int] = []
    left = np.ones(len(y), bool)
    for _ in range(k):
        values, counts = np.unique(y[left], return_counts=True)
        pick = rng.choice(np.flatnonzero(left & (y == values[counts.argmax()])))
        left[pick] = False
        dropped.append(int(pick))
    return np.array(dropped, dtype=np.int64)


def stratified_subset(x: np.ndarray, y: np.ndarray, n: int | None, seed: int):
    """At most ``n`` samples with the class proportions of ``y``, each class at least once; all
    of them if n is None."""
    if n is None or n >= len(y):
        return x, y
    picked = stratified_indices(y, n, seed)
    return x[picked], y[picked]


def flat_pixels(images: np.ndarray) -> np.ndarray:
    """uint8 images (n, H, W) -> float32 rows (n, H*W) scaled to 0..1."""
    return images.reshape(len(images), -1).astype(np.float32) / 255.0


def project(x: np.ndarray, mean: np.ndarray, components: np.ndarray, n: int) -> np.ndarray:
    """Coordinates of ``x`` on the first ``n`` rows of ``components`` (float32, contiguous)."""
    return np.ascontiguousarray((x - mean) @ components[:n].T)


class PcaProjection:
    """PCA fitted once on ``x_fit`` (up to ``n_max`` components); ``transform(x, n)`` slices
    its first n components, so a sweep over n costs one fit."""

    def __init__(self, x_fit: np.ndarray, n_max: int):
        from sklearn.decomposition import PCA

        # at most as many components as samples or pixels (a tiny user dataset has few samples)
        self.pca = PCA(n_components=min(n_max, *x_fit.shape),
                       svd_solver="covariance_eigh").fit(x_fit)
        self.mean = self.pca.mean_.astype(np.float32)
        self.components = self.pca.components_.astype(np.float32)

    def transform(self, x: np.ndarray, n: int) -> np.ndarray:
        return project(x, self.mean, self.components, n)
