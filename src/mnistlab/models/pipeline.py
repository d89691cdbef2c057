"""A classic model as one scikit-learn pipeline from raw images: the study's own preparation
(pixels to 0..1, the optional square root, the PCA coordinates) then the estimator.

The study fits the estimator on ``ImageInputs.features`` of its split, and saves
``Pipeline([("inputs", ImageInputs), ("model", estimator)])``: the saved model applies the very
operations, in the same float32 arithmetic, that produced the report's numbers.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from ..data.prepare import flat_pixels, project


class ImageInputs(TransformerMixin, BaseEstimator):
    """uint8 images ``(n, H, W)`` -> a classic model's inputs.

    Parameters
    ----------
    image_shape : (height, width)
        The images it accepts.
    pixel_transform : {"linear", "sqrt"}
        Applied to the 0..1 pixels before the projection (only with one).

    Attributes
    ----------
    mean_, components_ : ndarray (float32) or None
        The PCA the inputs are projected on; None for a model that reads the pixels.
    """

    def __init__(self, image_shape: tuple[int, int] = (28, 28), pixel_transform: str = "linear"):
        self.image_shape = image_shape
        self.pixel_transform = pixel_transform

    @classmethod
    def from_projection(cls, image_shape, pixel_transform: str, projection=None,
                        n_components: int = 0) -> ImageInputs:
        """Inputs projected on the first ``n_components`` of a fitted ``PcaProjection`` (or the
        pixels themselves when ``projection`` is None)."""
        inputs = cls(tuple(int(s) for s in image_shape), pixel_transform)
        if projection is None:
            inputs.mean_ = inputs.components_ = None
        else:
            inputs.mean_ = projection.mean
            inputs.components_ = np.ascontiguousarray(projection.components[:n_components])
        return inputs

    def fit(self, X, y=None) -> ImageInputs:  # noqa: ARG002 (scikit-learn's signature)
        raise TypeError("ImageInputs is built from the study's fitted PCA "
                        "(ImageInputs.from_projection), not fitted on its own")

    def features(self, flat: np.ndarray) -> np.ndarray:
        """Model inputs of pixels already flattened and scaled to 0..1 (float32)."""
        if self.components_ is None:
            return flat
        x = np.sqrt(flat) if self.pixel_transform == "sqrt" else flat
        return project(x, self.mean_, self.components_, len(self.components_))

    def transform(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X)
        if X.shape[1:] != tuple(self.image_shape):
            raise ValueError(f"expected images of shape (n, {self.image_shape[0]}, "
                             f"{self.image_shape[1]}), got {X.shape}")
        return self.features(flat_pixels(X))

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "mean_")
