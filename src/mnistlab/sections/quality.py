"""Is the data clean? Exact and near duplicates, train/test leakage, likely label errors and
outliers, measured on the dataset itself before any model of the study uses it.

Seed 1.2 asks why a test set is held out; the answer holds only if no test image sits in the
training set too, and a test accuracy means what it says only if the labels are right. Two
steps, each a pure function of the data and its parameters:

- ``neighbours``: exact duplicates by content, near duplicates and leaks by the nearest
  neighbours in a PCA space (the distance reported is measured on the pixels), and outliers
  by the distance to the nearest images of their own class;
- ``labels``: confident learning (cleanlab's ``find_label_issues``) on out-of-fold predicted
  probabilities of a checker model, and what removing the flagged or leaked images changes.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ..data.datasets import Dataset
from ..data.preprocess import deskew
from ..engine.step import Step, bind

NAME = "quality"
TITLE = "1b. Is the data clean? Duplicates, leakage and label errors"

SPLITS = ("train", "test")
KINDS = ("duplicate", "label-conflict", "leak", "near-duplicate", "near-leak", "label-issue",
         "outlier")
"""Each issue's kind. ``duplicate``: the same pixels as an earlier image of its split with the
same label; ``label-conflict``: the same pixels as another image (either split) with another
label; ``leak``: a test image whose exact pixels are in the training set with the same label;
``near-duplicate`` / ``near-leak``: closer than the near threshold to an image of its split /
of the training set; ``label-issue``: cleanlab's verdict; ``outlier``: far from its class."""

# Up to this many training images the checker is an RBF SVC and an MLP voting by their mean
# probabilities, above it k-NN. Measured on mnist-5k (deskewed square-root pixels, PCA-50) with
# 2 % of the training labels flipped, seeds 0-3, find_label_issues' default filter: the pair
# found the flips with precision 0.81-0.86 and recall 0.80-0.93; the SVC alone 0.79-0.87 and
# 0.78-0.91, the MLP alone 0.67-0.71 and 0.85-0.95, k-NN 0.66-0.73 and 0.83-0.93. On full Fashion-MNIST
# the SVC's probabilities cost minutes a fold; k-NN takes 6 s for all five folds.
SVC_UP_TO = 10_000

# Two warnings the checker raises on purpose: SVC(probability=True)'s deprecation (see _checker)
# and the MLP stopping at its max_iter (its validation accuracy no longer moves by then). Set
# once, at import, before the study's threads start: warnings.catch_warnings() saves and
# restores the process's whole filter list, so a block of it in one step's thread undid the
# filters another thread had set (a quiet study then printed a classic model's warning).
warnings.filterwarnings("ignore", message="The `probability` parameter", category=FutureWarning)
warnings.filterwarnings("ignore", message="Stochastic Optimizer: Maximum iterations")


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n_components: int = Field(
        50, ge=2, description="PCA components of the neighbour search and of the checker")
    near_factor: float = Field(
        0.25, gt=0, lt=1, description="near duplicate: closer than this fraction of the median "
        "distance from a training image to its nearest other training image")
    outlier_neighbours: int = Field(
        5, ge=1, description="an image's outlier score is its distance to this nearest image "
        "of its class, over the class's median of that distance")
    outlier_iqr: float = Field(
        3.0, gt=0, description="outlier: score above the class's third quartile plus this many "
        "interquartile ranges (Tukey's far-out rule)")
    checker: Literal["auto", "svc+mlp", "knn"] = Field(
        "auto", description="model whose out-of-fold probabilities cleanlab reads: auto = an RBF "
        f"SVC and an MLP voting, up to {SVC_UP_TO:,} training images, k-NN above (cost)")
    folds: int = Field(5, ge=2, le=20, description="cross-validation folds of the checker")
    shown: int = Field(12, ge=1, le=50, description="suspects shown per kind in the report")
    bootstrap: int = Field(1000, ge=100, description="test-set resamples for the noise of an "
                           "accuracy difference")


QUICK = {"checker": "knn", "bootstrap": 200}


@dataclass
class IssueTable:
    """One row per issue (parallel arrays), and the images of the first ``shown`` of each kind.

    ``split`` and ``other_split`` index :data:`SPLITS` (``other_split`` -1: no other image),
    ``kind`` indexes :data:`KINDS`; ``suggested`` is -1 where the check suggests no label.
    """

    split: np.ndarray
    index: np.ndarray
    kind: np.ndarray
    score: np.ndarray
    given: np.ndarray
    suggested: np.ndarray
    other_split: np.ndarray
    other_index: np.ndarray
    other_label: np.ndarray
    shown: np.ndarray  # rows of the table whose images are kept
    shown_images: np.ndarray
    shown_others: np.ndarray  # the other image of a pair, zeros where there is none


@dataclass
class NeighbourIssues(IssueTable):
    """Duplicates, leaks, near duplicates and outliers, with the thresholds that decided them."""

    n_train: int
    n_test: int
    n_components: int
    explained_variance: float
    nearest_rms_median: float  # grey levels (0-255): a training image to its nearest other one
    near_threshold: float  # grey levels, RMS over the pixels
    near_factor: float
    outlier_neighbours: int
    outlier_iqr: float


@dataclass
class LabelIssues(IssueTable):
    """cleanlab's label issues and what removing flagged or leaked images changes."""

    checker: str
    features: str  # what the checker reads
    folds: int
    oof_accuracy: float  # out-of-fold accuracy of the checker on the training labels
    test_accuracy: float  # the checker fitted on every training image
    # test accuracy without the test images that have a copy or near copy in the training set
    n_leaked: int
    accuracy_without_leaked: float
    accuracy_on_leaked: float  # nan when there is none
    # the checker refitted without the flagged training images / without as many random ones
    n_removed: int
    accuracy_cleaned: float
    accuracy_random_removed: float
    cleaned_delta_se: float  # paired bootstrap standard error of accuracy_cleaned - test_accuracy
    random_delta_se: float
    bootstrap: int


def _empty_table(image_shape: tuple[int, ...]) -> dict:
    i = np.zeros(0, dtype=np.int64)
    return dict(split=i, index=i, kind=i, score=np.zeros(0, dtype=np.float32), given=i,
                suggested=i, other_split=i, other_index=i, other_label=i, shown=i,
                shown_images=np.zeros((0, *image_shape), dtype=np.uint8),
                shown_others=np.zeros((0, *image_shape), dtype=np.uint8))


def _table(rows: list[dict], data: Dataset, shown: int, worst_first: dict[str, bool]) -> dict:
    """Rows (dicts of the table's columns) -> the table's arrays, sorted by kind, then from the
    strongest suspect (``worst_first[kind]``: a high score is worse; among equal scores, the
    lowest optional ``tiebreak`` first), with the images of the first ``shown`` of each kind."""
    if not rows:
        return _empty_table(data.image_shape)
    columns = {c: np.array([r.get(c, 0.0) for r in rows]) for c in (*rows[0], "tiebreak")}
    tiebreak = columns.pop("tiebreak")
    kind = columns["kind"]
    score = columns["score"].astype(np.float64)
    order = np.lexsort((columns["index"], columns["split"], tiebreak,
                        np.where([worst_first[KINDS[k]] for k in kind], -score, score), kind))
    out = {c: v[order].astype(np.float32 if c == "score" else np.int64) for c, v in columns.items()}
    picked = np.concatenate([np.flatnonzero(out["kind"] == k)[:shown] for k in range(len(KINDS))])
    images = {0: data.x_train, 1: data.x_test}
    shown_images = np.stack([images[s][i] for s, i in zip(out["split"][picked],
                                                          out["index"][picked])])
    blank = np.zeros(data.image_shape, dtype=np.uint8)
    shown_others = np.stack([images[s][i] if s >= 0 else blank
                             for s, i in zip(out["other_split"][picked],
                                             out["other_index"][picked])])
    return {**out, "shown": picked.astype(np.int64), "shown_images": shown_images,
            "shown_others": shown_others}


def _row(split: int, index: int, kind: str, score: float, given: int, suggested: int = -1,
         other_split: int = -1, other_index: int = -1, other_label: int = -1) -> dict:
    return dict(split=split, index=index, kind=KINDS.index(kind), score=score, given=given,
                suggested=suggested, other_split=other_split, other_index=other_index,
                other_label=other_label)


def _exact_duplicates(data: Dataset) -> list[dict]:
    """Images whose bytes equal an earlier image's: within a split, and test images found in
    the training set. The earlier image (a training image first) is the pair's other half."""
    flat = np.concatenate([data.x_train.reshape(len(data.x_train), -1),
                           data.x_test.reshape(len(data.x_test), -1)])
    labels = np.concatenate([data.y_train, data.y_test])
    n_train = len(data.y_train)
    # numpy's unique over whole rows viewed as one opaque value: a sort of the bytes
    rows = np.ascontiguousarray(flat).view(np.dtype((np.void, flat.shape[1]))).ravel()
    _, first, inverse, counts = np.unique(rows, return_index=True, return_inverse=True,
                                          return_counts=True)
    found = []
    for position in np.flatnonzero(counts[inverse] > 1):
        reference = first[inverse[position]]  # the first occurrence: training images come first
        if position == reference:
            continue
        split, index = (0, position) if position < n_train else (1, position - n_train)
        other_split, other_index = ((0, reference) if reference < n_train
                                    else (1, reference - n_train))
        if labels[position] != labels[reference]:
            kind = "label-conflict"
        else:
            kind = "leak" if split == 1 and other_split == 0 else "duplicate"
        found.append(_row(split, int(index), kind, 0.0, int(labels[position]),
                          int(labels[reference]) if kind == "label-conflict" else -1,
                          other_split, int(other_index), int(labels[reference])))
    return found


def _rms(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Root-mean-square pixel difference of row pairs, in grey levels."""
    d = a.astype(np.float32) - b.astype(np.float32)
    return np.sqrt(np.einsum("ij,ij->i", d, d) / a.shape[1])


def _closest(query_pixels, query_z, pool_pixels, pool_z, k: int, skip_self: bool):
    """Each query's closest image of the pool by pixel RMS among its ``k`` nearest in the PCA
    space (PCA distances never exceed pixel distances, so a pair close in pixels is close
    there too; the pixels then decide among the candidates): (index, rms)."""
    from sklearn.neighbors import NearestNeighbors

    search = NearestNeighbors(n_neighbors=min(k + skip_self, len(pool_z)),
                              algorithm="brute").fit(pool_z)
    _, candidates = search.kneighbors(query_z)
    if skip_self:  # drop the query itself wherever it appears among its candidates
        own = np.arange(len(query_z))[:, None]
        candidates = np.where(candidates == own, -1, candidates)
    best_index = np.full(len(query_z), -1, dtype=np.int64)
    best_rms = np.full(len(query_z), np.inf, dtype=np.float32)
    for column in candidates.T:
        valid = column >= 0
        rms = np.full(len(query_z), np.inf, dtype=np.float32)
        rms[valid] = _rms(query_pixels[valid], pool_pixels[column[valid]])
        better = rms < best_rms
        best_index[better], best_rms[better] = column[better], rms[better]
    return best_index, best_rms


def _outlier_scores(z_train, y_train, z_test, y_test, n_classes: int, k: int):
    """Distance to the ``k``-th nearest training image of the same class (itself excluded),
    over the class's median of that distance among training images."""
    from sklearn.neighbors import NearestNeighbors

    scores = [np.full(len(y_train), np.nan), np.full(len(y_test), np.nan)]
    for c in range(n_classes):
        members = np.flatnonzero(y_train == c)
        if len(members) <= k:
            continue
        search = NearestNeighbors(n_neighbors=k + 1, algorithm="brute").fit(z_train[members])
        own = search.kneighbors(z_train[members])[0][:, k]
        median = max(float(np.median(own)), 1e-12)
        scores[0][members] = own / median
        queries = np.flatnonzero(y_test == c)
        if len(queries):
            scores[1][queries] = search.kneighbors(z_test[queries], n_neighbors=k)[0][:, -1] / median
    return scores


def _near_pairs(split: int, nearest: np.ndarray, rms: np.ndarray, labels: np.ndarray,
                threshold: float, exact: set) -> list[dict]:
    """Pairs of one split closer than ``threshold`` (not identical), each once: the later
    image of the pair is the row, the earlier its other half."""
    rows, seen = [], set()
    for i in np.flatnonzero((rms > 0) & (rms < threshold)):
        first, later = sorted((int(i), int(nearest[i])))
        if (first, later) in seen or (split, later) in exact:
            continue
        seen.add((first, later))
        rows.append(_row(split, later, "near-duplicate", float(rms[i]), int(labels[later]),
                         other_split=split, other_index=first, other_label=int(labels[first])))
    return rows


def neighbours(data: Dataset, n_components: int, near_factor: float, outlier_neighbours: int,
               outlier_iqr: float, shown: int, seed: int) -> NeighbourIssues:
    """Exact and near duplicates, leaks and outliers."""
    from sklearn.decomposition import PCA

    rows = _exact_duplicates(data)
    exact = {(r["split"], r["index"]) for r in rows}
    train = data.x_train.reshape(len(data.x_train), -1)
    test = data.x_test.reshape(len(data.x_test), -1)
    n_components = min(n_components, train.shape[1], len(train))
    pca = PCA(n_components, svd_solver="randomized", random_state=seed)
    z_train = pca.fit_transform(train.astype(np.float32)).astype(np.float32)
    z_test = pca.transform(test.astype(np.float32)).astype(np.float32)

    nearest_train, rms_train = _closest(train, z_train, train, z_train, 3, skip_self=True)
    finite = rms_train[np.isfinite(rms_train) & (rms_train > 0)]
    median = float(np.median(finite)) if len(finite) else 0.0
    threshold = near_factor * median
    rows += _near_pairs(0, nearest_train, rms_train, data.y_train, threshold, exact)
    nearest, rms = _closest(test, z_test, train, z_train, 3, skip_self=False)
    for i in np.flatnonzero((rms > 0) & (rms < threshold)):
        if (1, int(i)) not in exact:
            rows.append(_row(1, int(i), "near-leak", float(rms[i]), int(data.y_test[i]),
                             other_split=0, other_index=int(nearest[i]),
                             other_label=int(data.y_train[nearest[i]])))
    if len(test) > 1:
        nearest, rms = _closest(test, z_test, test, z_test, 3, skip_self=True)
        rows += _near_pairs(1, nearest, rms, data.y_test, threshold, exact)

    scores = _outlier_scores(z_train, data.y_train, z_test, data.y_test, data.n_classes,
                             outlier_neighbours)
    for c in range(data.n_classes):
        own = scores[0][data.y_train == c]
        if not np.isfinite(own).any():
            continue
        q1, q3 = np.nanpercentile(own, [25, 75])
        limit = q3 + outlier_iqr * (q3 - q1)
        for split, labels in ((0, data.y_train), (1, data.y_test)):
            for i in np.flatnonzero((labels == c) & (scores[split] > limit)):
                rows.append(_row(split, int(i), "outlier", float(scores[split][i]), c))
    table = _table(rows, data, shown, {"duplicate": False, "label-conflict": False,
                                       "leak": False, "near-duplicate": False,
                                       "near-leak": False, "outlier": True})
    return NeighbourIssues(
        **table, n_train=len(train), n_test=len(test), n_components=int(n_components),
        explained_variance=float(pca.explained_variance_ratio_.sum()),
        nearest_rms_median=median, near_threshold=threshold, near_factor=near_factor,
        outlier_neighbours=outlier_neighbours, outlier_iqr=outlier_iqr)


def leaked_test_images(neighbours: NeighbourIssues) -> tuple[np.ndarray, np.ndarray]:
    """The test images with an exact or near copy in the training set, under the same label or
    another (a model may score them by memory): their indices, ascending, and their labels."""
    kinds = [KINDS.index(k) for k in ("leak", "near-leak", "label-conflict")]
    rows = np.flatnonzero((neighbours.split == 1) & np.isin(neighbours.kind, kinds)
                          & (neighbours.other_split == 0))
    index, first = np.unique(neighbours.index[rows], return_index=True)
    return index, neighbours.given[rows[first]]


@dataclass
class LeakEffect:
    """A model's test accuracy on every test image, without the leaked ones and on them."""

    n_leaked: int
    accuracy: float
    accuracy_without_leaked: float  # nan when every test image leaked
    accuracy_on_leaked: float  # nan when none did
    # bootstrap standard error of accuracy - accuracy_without_leaked (test images resampled)
    inflation_se: float

    @property
    def inflation(self) -> float:
        """How much the leaked test images raise the accuracy."""
        return self.accuracy - self.accuracy_without_leaked


def leak_effect(right: np.ndarray, leaked: np.ndarray, resamples: int, seed: int) -> LeakEffect:
    """What the ``leaked`` test images do to an accuracy (``right``: a boolean per test image).
    The noise of the difference: the test set resampled with replacement ``resamples`` times,
    both accuracies computed on each resample."""
    right, leaked = np.asarray(right, dtype=bool), np.asarray(leaked, dtype=bool)
    kept = ~leaked

    def mean(values, where):
        return float(values[where].mean()) if where.any() else float("nan")

    se = float("nan")
    if leaked.any() and kept.sum() > 1:
        rng = np.random.default_rng(seed)
        differences = []
        for start in range(0, resamples, 100):  # 100 resamples at a time: bounded memory
            rows = rng.integers(0, len(right), (min(100, resamples - start), len(right)))
            right_rows, kept_rows = right[rows], kept[rows]
            with np.errstate(invalid="ignore", divide="ignore"):
                without = (right_rows & kept_rows).sum(1) / kept_rows.sum(1)
            differences.append(right_rows.mean(1) - without)
        differences = np.concatenate(differences)
        se = float(np.nanstd(differences, ddof=1))
    return LeakEffect(int(leaked.sum()), float(right.mean()) if len(right) else float("nan"),
                      mean(right, kept), mean(right, leaked), se)


def checker_name(checker: str, n_train: int) -> str:
    if checker == "auto":
        return "svc+mlp" if n_train <= SVC_UP_TO else "knn"
    return checker


def _checker(name: str, seed: int):
    if name == "svc+mlp":
        from sklearn.ensemble import VotingClassifier
        from sklearn.neural_network import MLPClassifier
        from sklearn.svm import SVC

        # libsvm's own probabilities (Platt scaling of each pair of classes, then coupled):
        # CalibratedClassifierCV, which scikit-learn 1.9 offers instead, calibrates the SVC's
        # one-vs-rest scores and flagged 2-3x as many clean labels on mnist-5k (precision
        # 0.45-0.53 against 0.79-0.87), so probability=True stays until it is removed (1.11).
        svc = SVC(C=10, probability=True, random_state=seed)
        mlp = MLPClassifier((256,), alpha=1e-3, max_iter=60, batch_size=128, random_state=seed)
        return VotingClassifier([("svc", svc), ("mlp", mlp)], voting="soft")
    from sklearn.neighbors import KNeighborsClassifier

    return KNeighborsClassifier(n_neighbors=10, weights="distance", algorithm="brute")


def checker_features(data: Dataset, n_components: int, seed: int):
    """The checker's inputs: square-root pixels (deskewed for digits, as the embedding reads
    them), projected on a PCA fitted on the training images."""
    from sklearn.decomposition import PCA

    def pixels(images):
        x = deskew(images).clip(0, 255) if data.digits else images.astype(np.float32)
        return np.sqrt(x.reshape(len(x), -1) / 255.0, dtype=np.float32)

    train, test = pixels(data.x_train), pixels(data.x_test)
    pca = PCA(min(n_components, train.shape[1], len(train)), svd_solver="randomized",
              random_state=seed).fit(train)
    return pca.transform(train).astype(np.float32), pca.transform(test).astype(np.float32)


def _paired_se(right_a: np.ndarray, right_b: np.ndarray, resamples: int, seed: int) -> float:
    """Bootstrap standard error of mean(right_b) - mean(right_a) over the same test images."""
    rng = np.random.default_rng(seed)
    diff = right_b.astype(np.float32) - right_a.astype(np.float32)
    if not len(diff):
        return float("nan")
    means = np.array([diff[rng.integers(0, len(diff), len(diff))].mean()
                      for _ in range(resamples)])
    return float(means.std(ddof=1))


def _label_issues(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """The images cleanlab's calibrated count of label errors says there are, lowest
    probability of the given label first. On planted flips (tests/test_quality.py, seeds 7, 0,
    1, 2) this found them with precision 0.87-0.94 and recall 0.90-0.96, where
    ``find_label_issues``' default filter reached 0.81-0.83 and 0.79-0.93: its count of errors
    fell short (66-79 of 80)."""
    from cleanlab.count import num_label_issues
    from cleanlab.rank import get_label_quality_scores

    count = num_label_issues(y, p, estimation_method="off_diagonal_calibrated")
    scores = get_label_quality_scores(y, p, method="self_confidence")
    return np.sort(np.argsort(scores, kind="stable")[:count])


def labels(data: Dataset, neighbours: NeighbourIssues, n_components: int, checker: str,
           folds: int, shown: int, bootstrap: int, seed: int) -> LabelIssues:
    """Likely label errors of both splits and what cleaning changes."""
    from sklearn.base import clone
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    name = checker_name(checker, len(data.y_train))
    z_train, z_test = checker_features(data, n_components, seed)
    model = _checker(name, seed)
    smallest = int(np.bincount(data.y_train, minlength=data.n_classes).min())
    n_folds = max(2, min(folds, smallest))
    cv = StratifiedKFold(n_folds, shuffle=True, random_state=seed)
    p_train = cross_val_predict(model, z_train, data.y_train, cv=cv, method="predict_proba")
    fitted = clone(model).fit(z_train, data.y_train)
    p_test = fitted.predict_proba(z_test)
    rows = []
    for split, y, p in ((0, data.y_train, p_train), (1, data.y_test, p_test)):
        for i in _label_issues(y, p):
            # among equal probabilities of the given label (k-NN's votes give many zeros), the
            # most probable other label first
            rows.append({**_row(split, int(i), "label-issue", float(p[i, y[i]]), int(y[i]),
                                int(p[i].argmax())), "tiebreak": -float(p[i].max())})
    table = _table(rows, data, shown, {"label-issue": False})

    right = fitted.predict(z_test) == data.y_test
    leaked = np.zeros(len(data.y_test), dtype=bool)
    leaked[leaked_test_images(neighbours)[0]] = True

    drop = np.unique(table["index"][table["split"] == 0])
    keep = np.setdiff1d(np.arange(len(data.y_train)), drop)
    keep_random = np.sort(np.random.default_rng(seed).choice(len(data.y_train), len(keep),
                                                             replace=False))

    def test_right(rows: np.ndarray) -> np.ndarray:
        refitted = clone(model).fit(z_train[rows], data.y_train[rows])
        return refitted.predict(z_test) == data.y_test

    right_cleaned, right_random = test_right(keep), test_right(keep_random)
    return LabelIssues(
        **table, checker=name, folds=n_folds,
        features=("a PCA of the square-root pixels of the deskewed images" if data.digits
                  else "a PCA of the square-root pixels"),
        oof_accuracy=float((p_train.argmax(1) == data.y_train).mean()),
        test_accuracy=float(right.mean()), n_leaked=int(leaked.sum()),
        accuracy_without_leaked=float(right[~leaked].mean()) if (~leaked).any() else float("nan"),
        accuracy_on_leaked=float(right[leaked].mean()) if leaked.any() else float("nan"),
        n_removed=int(len(drop)), accuracy_cleaned=float(right_cleaned.mean()),
        accuracy_random_removed=float(right_random.mean()),
        cleaned_delta_se=_paired_se(right, right_cleaned, bootstrap, seed),
        random_delta_se=_paired_se(right, right_random, bootstrap, seed), bootstrap=bootstrap)


def plan(data: Dataset, params: Params, seed: int, engine: str = "sklearn",
         earlier: Mapping[str, Step] | None = None) -> list[Step]:
    return [
        bind("neighbours", neighbours, params, seed),
        bind("labels", labels, params, seed, needs={"neighbours": "neighbours"}),
    ]
