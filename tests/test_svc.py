"""mnistlab's SVC predicts what scikit-learn's predicts, from the same fit."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.svm import SVC as LibsvmSVC

from mnistlab.models.persistence import load_pipeline, save_pipeline
from mnistlab.models.svc import SVC


@pytest.fixture(scope="module")
def digits_pca():
    """Real 8x8 digits on 20 PCA components: fit on 1,000, predict 797."""
    x, y = load_digits(return_X_y=True)
    z = PCA(20, random_state=0).fit_transform(x / 16.0).astype(np.float32)
    return z[:1000], y[:1000], z[1000:], y[1000:]


@pytest.mark.parametrize("kernel, params", [
    ("rbf", {"C": 10.0}), ("linear", {}), ("poly", {"degree": 3}), ("poly", {"degree": 2}),
    ("sigmoid", {"gamma": 0.05}),
])
@pytest.mark.parametrize("break_ties", [False, True])
def test_predictions_and_decision_values_are_libsvms(digits_pca, kernel, params, break_ties):
    x, y, xt, _ = digits_pca
    settings = {"kernel": kernel, "break_ties": break_ties, "random_state": 0, **params}
    ours, theirs = SVC(**settings).fit(x, y), LibsvmSVC(**settings).fit(x, y)
    assert ours._predicts_through_blas()
    np.testing.assert_array_equal(ours.predict(xt), theirs.predict(xt))
    np.testing.assert_allclose(ours.decision_function(xt), theirs.decision_function(xt),
                               rtol=1e-9, atol=1e-9)
    ours.set_params(decision_function_shape="ovo")
    theirs.set_params(decision_function_shape="ovo")
    np.testing.assert_allclose(ours.decision_function(xt), theirs.decision_function(xt),
                               rtol=1e-9, atol=1e-9)


def test_one_vs_one_votes_break_ties_as_libsvm_does(digits_pca):
    """A sigmoid kernel this wide ties the votes of 56 of the 797 digits: a tie goes to the
    lowest class."""
    x, y, xt, _ = digits_pca
    ours, theirs = (model(kernel="sigmoid", gamma=0.5, random_state=0).fit(x, y)
                    for model in (SVC, LibsvmSVC))
    ovo = ours._ovo_decision(xt.astype(np.float64))
    votes = np.zeros((len(xt), 10), dtype=int)
    pairs = [(a, b) for a in range(10) for b in range(a + 1, 10)]  # libsvm's order
    for pair, (i, j) in enumerate(pairs):
        winner = np.where(ovo[:, pair] > 0, i, j)
        votes[np.arange(len(xt)), winner] += 1
    tied = (votes == votes.max(axis=1, keepdims=True)).sum(axis=1) > 1
    assert tied.sum() > 10  # the check below covers ties
    np.testing.assert_array_equal(ours.predict(xt), theirs.predict(xt))


def test_two_classes_keep_scikit_learns_sign(digits_pca):
    x, y, xt, _ = digits_pca
    pick = y < 2
    ours, theirs = (model(random_state=0).fit(x[pick], y[pick] + 3)
                    for model in (SVC, LibsvmSVC))
    np.testing.assert_allclose(ours.decision_function(xt), theirs.decision_function(xt),
                               rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(ours.predict(xt), theirs.predict(xt))
    assert set(ours.predict(xt)) == {3, 4}


def test_what_it_cannot_batch_is_scikit_learns_path(digits_pca):
    x, y, xt, _ = digits_pca
    sparse = SVC(random_state=0).fit(scipy.sparse.csr_matrix(x), y)
    assert not sparse._predicts_through_blas()
    np.testing.assert_array_equal(sparse.predict(scipy.sparse.csr_matrix(xt)),
                                  LibsvmSVC(random_state=0).fit(x, y).predict(xt))
    precomputed = SVC(kernel="precomputed").fit(x @ x.T, y)
    assert not precomputed._predicts_through_blas()
    assert precomputed.predict(xt @ x.T).shape == (len(xt),)


def test_wrong_inputs_fail_as_an_svcs_do(digits_pca):
    x, y, xt, _ = digits_pca
    model = SVC().fit(x, y)
    with pytest.raises(ValueError, match="features"):
        model.predict(xt[:, :5])
    with pytest.raises(ValueError, match="break_ties must be False"):
        SVC(break_ties=True, decision_function_shape="ovo").fit(x, y).predict(xt)
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        SVC().predict(xt)


def test_a_saved_pipeline_of_it_loads_and_predicts_the_same(tmp_path):
    from mnistlab.models.pipeline import ImageInputs

    x, y = load_digits(return_X_y=True)
    images = (x.reshape(-1, 8, 8) * 255 / 16).astype(np.uint8)
    inputs = ImageInputs.from_projection((8, 8), "linear")
    model = SVC(random_state=0).fit(inputs.transform(images[:800]), y[:800])
    path = save_pipeline(inputs, model, tmp_path / "svc.skops")
    loaded = load_pipeline(path)
    assert type(loaded.steps[-1][1]) is SVC
    np.testing.assert_array_equal(loaded.predict(images[800:]),
                                  model.predict(inputs.transform(images[800:])))
