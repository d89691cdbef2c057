"""The data preparations every section shares: stratified subsets, pixels as model inputs, PCA
projections. One place for each, so that two sections never prepare the same data two ways.
"""

from __future__ import annotations

import numpy as np


def stratified_indices(y: np.ndarray, n: int | None, seed: int) -> np.ndarray:
    """The indices of at most ``n`` samples with the class proportions of ``y`` (in
    scikit-learn's shuffled order); all of them, in order, if n is None."""
    if n is None or n >= len(y):
        return np.arange(len(y))
    from sklearn.model_selection import train_test_split

    picked, _ = train_test_split(np.arange(len(y)), train_size=n, stratify=y,
                                 random_state=seed)
    return picked


def stratified_subset(x: np.ndarray, y: np.ndarray, n: int | None, seed: int):
    """At most ``n`` samples with the class proportions of ``y``; all of them if n is None."""
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
