"""scikit-learn's SVC, predicting through BLAS.

scikit-learn's ``SVC`` fits and predicts with libsvm, which evaluates the kernel one (input,
support vector) pair at a time, in a plain loop. Prediction costs as much as the fit: on
Fashion-MNIST's 10,000 test images an RBF SVC of 100 PCA components takes 30 s a pass.
:class:`SVC` keeps libsvm's fit and model, and computes the same decision values from one
kernel matrix per batch (scikit-learn's ``pairwise_kernels``, matrix products) and one more
matrix product with the one-vs-one dual coefficients: 6.5x faster on one core (10,000 images,
3,864 support vectors, 4.9 -> 0.75 s), equal to libsvm's values within 1e-11 and to its
predictions label for label. No library offers this for a fitted libsvm model, hence the few
lines here. Everything else (sparse inputs, ``probability=True``, a callable or precomputed
kernel) is scikit-learn's own path.

Kept beside scikit-learn-intelex, whose oneDAL predicts faster still: a saved model is plain
scikit-learn, to load where scikit-learn-intelex is not installed, and this is how it predicts
there at speed (full Fashion-MNIST's RBF SVC, 16,062 support vectors, 10,000 test images:
oneDAL 0.75 s, this 1.47 s, libsvm 9.51 s; labels as oneDAL's 0.9999; bench/engine.py).
"""

from __future__ import annotations

import numpy as np
from sklearn import svm

_BLAS_KERNELS = ("linear", "poly", "rbf", "sigmoid")
_KERNEL_BATCH = 1_000_000  # kernel entries a batch computes (8 MB of float64; larger was no faster)


class SVC(svm.SVC):
    """``sklearn.svm.SVC`` (same name, parameters and fit) whose ``decision_function`` and
    ``predict`` compute the kernel against the support vectors as a matrix product.

    ``predict`` follows ``SVC``'s rules: the one-vs-one vote (a tie to the lowest class, as
    libsvm) or, with ``break_ties=True``, the argmax of ``decision_function``.
    """

    def decision_function(self, X):
        if not self._predicts_through_blas():
            return super().decision_function(X)
        from sklearn.utils.multiclass import _ovr_decision_function

        ovo = self._ovo_decision(self._validate_for_predict(X))
        if len(self.classes_) == 2:
            return -ovo.ravel()  # scikit-learn's sign for two classes
        if self.decision_function_shape == "ovr":
            return _ovr_decision_function(ovo < 0, -ovo, len(self.classes_))
        return ovo

    def predict(self, X):
        if not self._predicts_through_blas() or (self.break_ties and
                                                 self.decision_function_shape == "ovo"):
            return super().predict(X)  # the latter: scikit-learn's error
        if self.break_ties and self.decision_function_shape == "ovr" and len(self.classes_) > 2:
            return self.classes_[np.argmax(self.decision_function(X), axis=1)]
        ovo = self._ovo_decision(self._validate_for_predict(X))
        n_classes = len(self.classes_)
        votes = np.zeros((len(ovo), n_classes), dtype=np.int32)
        rows = np.arange(len(ovo))
        for pair, (i, j) in enumerate(_class_pairs(n_classes)):
            np.add.at(votes, (rows, np.where(ovo[:, pair] > 0, i, j)), 1)
        return self.classes_[np.argmax(votes, axis=1)]  # argmax: the first of a tie

    def _predicts_through_blas(self) -> bool:
        return (hasattr(self, "support_vectors_") and not self._sparse
                and self.kernel in _BLAS_KERNELS and self.probability is not True)

    def _ovo_decision(self, X: np.ndarray) -> np.ndarray:
        """libsvm's one-vs-one decision values: column p for the p-th pair (i < j) of classes,
        positive for i."""
        weights = self._pair_weights()
        out = np.empty((len(X), weights.shape[1]))
        batch = max(1, _KERNEL_BATCH // max(1, len(self.support_vectors_)))
        for start in range(0, len(X), batch):
            out[start:start + batch] = self._kernel(X[start:start + batch]) @ weights
        return out + self._intercept_

    def _pair_weights(self) -> np.ndarray:
        """(support vectors, pairs): the dual coefficients each support vector weighs its
        kernel value by in each pair's decision (zero outside the pair's two classes)."""
        n_classes = len(self.classes_)
        bounds = np.concatenate([[0], np.cumsum(self.n_support_)])
        weights = np.zeros((len(self.support_vectors_), n_classes * (n_classes - 1) // 2))
        for pair, (i, j) in enumerate(_class_pairs(n_classes)):
            of_i, of_j = slice(bounds[i], bounds[i + 1]), slice(bounds[j], bounds[j + 1])
            weights[of_i, pair] = self._dual_coef_[j - 1, of_i]
            weights[of_j, pair] = self._dual_coef_[i, of_j]
        return weights

    def _kernel(self, X: np.ndarray) -> np.ndarray:
        from sklearn.metrics.pairwise import pairwise_kernels

        if self.kernel == "poly":
            # the (integer) power by products, as libsvm does: numpy's float power is 6x slower
            base = (self._gamma * (X @ self.support_vectors_.T)) + self.coef0
            kernel = np.ones_like(base)
            for _ in range(int(self.degree)):
                kernel *= base
            return kernel
        return pairwise_kernels(X, self.support_vectors_, metric=self.kernel,
                                filter_params=True, gamma=self._gamma, degree=self.degree,
                                coef0=self.coef0)


def _class_pairs(n_classes: int) -> list[tuple[int, int]]:
    """libsvm's order of the one-vs-one pairs."""
    return [(i, j) for i in range(n_classes) for j in range(i + 1, n_classes)]
