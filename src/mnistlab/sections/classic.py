"""Part 3 of the seed: classic supervised learning (naive Bayes, logistic regression, SVMs,
trees, forests, k-NN, gradient boosting), every experiment of 3.1-3.4 measured.

Protocol: a stratified validation split is carved out of the training set once (seeded); every
model is fitted on the rest, hyper-parameters are chosen on the validation split, and the test
set is only scored, never used to choose. Kernel methods and k-NN read the first
``pca_components`` principal components (float32): the kernel cost is linear in the dimension,
and 100 components keep the class structure (the seed's own 3.4 shows it). Before that PCA the
pixels may be square-rooted (``pixel_transform``), which spreads the faint end of the grey scale
so that faint strokes weigh more in the PCA's distances; "auto" chooses on the validation split.
"""

from __future__ import annotations

import pickle
import time
import warnings
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NotRequired, TypedDict

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..core.errors import ConfigError
from ..core.files import sha256_file
from ..data.datasets import Dataset
from ..data.prepare import PcaProjection, flat_pixels, stratified_subset
from ..engine.measure import Measured
from ..engine.step import Step, SweepPoint, bind, gathered_rows, sweep
from ..models.fitting import accelerates, engine_label, fit
from ..models.persistence import library_versions, save_pipeline

NAME = "classic"
TITLE = "3. Supervised learning: classic classifiers"



def _svc(kernel: str, C: float):
    def build(seed: int, break_ties: bool):
        from ..models.svc import SVC  # scikit-learn's, predicting through BLAS

        # cache_size: 1 GB of kernel rows instead of 200 MB cuts fit time on 50k points.
        return SVC(kernel=kernel, C=C, cache_size=1000, break_ties=break_ties,
                   random_state=seed)
    return build


# scikit-learn is imported when a model is built, not when the study's configuration is read.
def _gaussian_nb(seed: int, break_ties: bool):
    from sklearn.naive_bayes import GaussianNB

    return GaussianNB()


def _bernoulli_nb(seed: int, break_ties: bool):
    from sklearn.naive_bayes import BernoulliNB

    return BernoulliNB(binarize=0.5)


def _logistic(seed: int, break_ties: bool):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=200, tol=1e-3)


def _linear_svm(seed: int, break_ties: bool):
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.svm import LinearSVC

    # liblinear fits the 10 one-vs-rest problems one after another on one core: run them in
    # parallel instead (33 s -> about half on 2 cores, Fashion-MNIST).
    return OneVsRestClassifier(LinearSVC(C=0.01, dual=False, tol=1e-3, random_state=seed),
                               n_jobs=-1)


def _decision_tree(seed: int, break_ties: bool):
    from sklearn.tree import DecisionTreeClassifier

    return DecisionTreeClassifier(random_state=seed)


def _random_forest(seed: int, break_ties: bool):
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=100, n_jobs=-1, random_state=seed)


def _knn(seed: int, break_ties: bool):
    from sklearn.neighbors import KNeighborsClassifier

    return KNeighborsClassifier(n_neighbors=5, weights="distance", algorithm="brute", n_jobs=-1)


def _hist_gb(seed: int, break_ties: bool):
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(max_iter=100, early_stopping=False, random_state=seed)


TREE = "sklearn.tree._tree.Tree"
BOOSTING_TREE = "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"


@dataclass(frozen=True)
class ModelInfo:
    """One classic model: how to build it, and what the section, the report and the saved
    model's loader know of it."""

    label: str  # as the report writes it
    family: Literal["generative", "discriminative"]
    reads_pca: bool  # fitted on the PCA projection (kernel methods, k-NN, boosting)
    build: Callable[[int, bool], Any]  # (seed, break_ties) -> the unfitted estimator
    # Fitted on one core whatever the machine (libsvm, a tree), or no faster on two
    # (Fashion-MNIST, 1 -> 2 BLAS threads: logistic regression 8.8 -> 13.2 s, naive Bayes about
    # 1 s either way): the runner fits them side by side.
    one_core: bool = False
    # Library types a saved model holds that skops does not trust by itself.
    trusted_types: tuple[str, ...] = ()
    # The user's parameters are those of the estimator inside a wrapper (linear-svm's LinearSVC)
    params_prefix: str = ""
    # scikit-learn-intelex has a twin of its estimator (models.fitting.TWINS; a test holds the
    # two together): said here so that planning imports no scikit-learn
    accelerated: bool = False


# The one registry of classic models: the config's choices, the estimators, the PCA models, the
# report's labels, the types a saved model may hold. Adding a model is one entry.
MODELS = {
    "gaussian-nb": ModelInfo("Gaussian naive Bayes", "generative", False, _gaussian_nb,
                             one_core=True),
    "bernoulli-nb": ModelInfo("Bernoulli naive Bayes", "generative", False, _bernoulli_nb,
                              one_core=True),
    # Not accelerated: on the 784 pixels oneDAL's solver runs on past scikit-learn's stopping
    # point (mnist-5k: 142 iterations instead of 42, training accuracy 0.983 -> 0.990, beyond
    # the seed-to-seed range) and took longer (Fashion-MNIST, in the study: 8.7 -> 14.2 s).
    "logistic": ModelInfo("logistic regression", "discriminative", False, _logistic,
                          one_core=True),
    "linear-svm": ModelInfo("linear SVM", "discriminative", False, _linear_svm,
                            params_prefix="estimator__"),
    "svc-linear": ModelInfo("SVC (linear kernel)", "discriminative", True, _svc("linear", 1.0),
                            one_core=True, accelerated=True),
    "svc-poly": ModelInfo("SVC (poly kernel)", "discriminative", True, _svc("poly", 1.0),
                          one_core=True, accelerated=True),
    "svc-rbf": ModelInfo("SVC (RBF kernel)", "discriminative", True, _svc("rbf", 10.0),
                         one_core=True, accelerated=True),
    "svc-sigmoid": ModelInfo("SVC (sigmoid kernel)", "discriminative", True,
                             _svc("sigmoid", 1.0), one_core=True, accelerated=True),
    "decision-tree": ModelInfo("decision tree", "discriminative", False, _decision_tree,
                               one_core=True, trusted_types=(TREE,)),
    "random-forest": ModelInfo("random forest", "discriminative", False, _random_forest,
                               trusted_types=(TREE,), accelerated=True),
    "knn": ModelInfo("k-nearest neighbours", "discriminative", True, _knn, accelerated=True),
    "hist-gb": ModelInfo("histogram gradient boosting", "discriminative", True, _hist_gb,
                         trusted_types=(BOOSTING_TREE,)),
}
ModelName = Literal[tuple(MODELS)]  # type: ignore[valid-type]  (pydantic validates the names)
PCA_MODELS = {name for name, info in MODELS.items() if info.reads_pca}
TRUSTED_TYPES = frozenset(t for info in MODELS.values() for t in info.trusted_types)
# Seed 3.1, generative vs discriminative as the training set grows: one of each kind plus the
# seed's linear SVM.
CURVE_MODELS = ("gaussian-nb", "logistic", "linear-svm")
C_SWEEP_MAX_ITER = 1_000_000
# libsvm's warning when the C sweep reaches that bound, ignored by a filter set once at import
# and not by warnings.catch_warnings() around the fit: that saves and restores the process's
# whole filter list and, in a step's thread, undid the filters of the steps beside it.
warnings.filterwarnings("ignore", message="Solver terminated early")
# Gradient boosting on fewer fit images than this computes on one core, beside another step:
# on 2,700 images (the quick profile) its second OpenMP thread gave 1.26x (63 bins: 6.2 ->
# 4.9 s) and, beside the embedding's process, none at all (10.2 s in the study); on 54,000 it
# gives 1.7x (79.4 -> 47.5 s), so there it keeps every core. Same trees either way.
ONE_CORE_BOOSTING_BELOW = 10_000


def make_classifier(name: str, params: dict[str, Any] | None = None, seed: int = 0, *,
                    break_ties: bool = False):
    """The scikit-learn classifier behind a model name (without its PCA step), with the user's
    ``params``.

    ``break_ties``: an SVC's predict() is the argmax of its decision_function() (a tie of the
    one-vs-one votes goes to the surest class, not to the lowest label), so that predictions
    and confidences come from one kernel pass instead of two (see :func:`_predict_once`).
    """
    info = MODELS[name]
    model = info.build(seed, break_ties)
    return model.set_params(**{info.params_prefix + k: v for k, v in (params or {}).items()})


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_train: int = Field(0, ge=0, description="training images used (0 = all)")
    validation_fraction: float = Field(0.1, gt=0, lt=0.5, description="share of the training "
                                       "set held out to choose hyper-parameters")
    models: list[ModelName] = Field(
        ["gaussian-nb", "bernoulli-nb", "logistic", "linear-svm", "svc-rbf", "decision-tree",
         "random-forest", "knn", "hist-gb"], description="models of the leaderboard")
    model_params: dict[str, dict[str, Any]] = Field(
        {}, description="scikit-learn parameters per model name, e.g. {svc-rbf = {C = 5.0}}")
    pca_components: int = Field(100, ge=1, description="PCA components read by SVC, k-NN and "
                                "gradient boosting")
    pixel_transform: Literal["auto", "linear", "sqrt"] = Field(
        "auto", description="pixels before that PCA: linear (x / 255), sqrt, or auto (the "
                            "better of both for an RBF SVC on the validation split)")
    train_score_sample: int = Field(10_000, ge=100, description="training images the training "
                                    "accuracy is measured on")
    learning_curve_sizes: list[int] = Field([100, 300, 1000, 3000, 10000],
                                            description="training-set sizes of the generative vs "
                                                        "discriminative curve (plus all)")
    tree_depths: list[int] = Field(list(range(1, 26)), description="decision-tree depths swept")
    svc_pca_components: list[int] = Field([10, 20, 30, 40, 50, 100, 200],
                                          description="PCA sizes of the SVC sweep")
    svc_sweep_max_train: int = Field(10_000, ge=100, description="training images of the SVC "
                                     "PCA sweep and kernel comparison (a stratified sample)")
    kernels: list[Literal["linear", "poly", "rbf", "sigmoid"]] = Field(
        ["linear", "poly", "rbf", "sigmoid"], description="SVC kernels compared")
    c_values: list[float] = Field([1e-4, 1.0, 100.0, 1e5], description="C of the margin figure")
    c_classes: list[int] = Field([0, 1], min_length=2, max_length=2,
                                 description="the two classes of the margin figure")
    c_max_train: int = Field(1_000, ge=20, description="training images of the margin figure")
    tree_pca_components: list[int] = Field(
        [1, 2, 3, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100],
        description="PCA sizes of the decision-tree sweep (seed 3.4)")
    n_errors_shown: int = Field(20, ge=0, le=100, description="misclassified test images shown")
    boosting_max_bins: int = Field(255, ge=2, le=255, description="histogram bins per input of "
                                   "gradient boosting (its max_bins; model_params overrides it)")

    @field_validator("learning_curve_sizes", "tree_depths", "svc_pca_components",
                     "tree_pca_components")
    @classmethod
    def _positive(cls, values: list[int]) -> list[int]:
        if not values or min(values) < 1:
            raise ValueError("give at least one value, every value >= 1")
        return sorted(set(values))

    @field_validator("c_values")
    @classmethod
    def _positive_c(cls, values: list[float]) -> list[float]:
        if not values or min(values) <= 0:
            raise ValueError("every C must be > 0")
        return values

    @model_validator(mode="after")
    def _check_model_params(self) -> Params:
        for name, params in self.model_params.items():
            if name not in ModelName.__args__:
                raise ValueError(f"model_params: unknown model {name!r}")
            try:
                model = make_classifier(name, params)
                if hasattr(model, "_validate_params"):
                    model._validate_params()
            except (ValueError, TypeError) as exc:
                raise ValueError(f"model_params.{name}: {exc}") from None
        return self


QUICK = {"max_train": 3000, "learning_curve_sizes": [100, 300, 1000], "tree_depths":
         [1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20], "svc_pca_components": [10, 20, 50],
         "svc_sweep_max_train": 2000, "tree_pca_components": [1, 2, 5, 10, 20, 50],
         "train_score_sample": 1000, "c_max_train": 400,
         # 2,700 images, 100 inputs: 63 bins instead of 255 halve gradient boosting's fit
         # (one thread: 14.3 -> 7.3 s), test accuracy 0.903 -> 0.906 on mnist-5k
         "boosting_max_bins": 63}


# ------------------------------------------------------------------ data

@dataclass
class Split:
    """Pixels scaled to 0..1 (float32, flattened), and their PCA projection."""

    x_fit: np.ndarray
    y_fit: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def make_split(data: Dataset, max_train: int, validation_fraction: float, seed: int) -> Split:
    from sklearn.model_selection import train_test_split

    x, y = stratified_subset(data.x_train, data.y_train, max_train or None, seed)
    x = flat_pixels(x)
    x_fit, x_val, y_fit, y_val = train_test_split(x, y, test_size=validation_fraction,
                                                  stratify=y, random_state=seed)
    x_test = flat_pixels(data.x_test)
    return Split(x_fit, y_fit, x_val, y_val, x_test, data.y_test)


def transform_pixels(x: np.ndarray, how: str) -> np.ndarray:
    """``x`` in 0..1; sqrt spreads the dark end and compresses the bright one."""
    return np.sqrt(x) if how == "sqrt" else x


# ------------------------------------------------------------------ results

@dataclass
class Representation:
    transform: str
    val_acc: dict[str, float]  # RBF SVC validation accuracy per transform (auto only)
    n_train: int


class ModelRow(TypedDict):
    model: str
    representation: str
    n_fit: int
    train_acc: float  # on train_score_n of the fit images
    val_acc: float
    test_acc: float
    fit_s: float
    predict_s_per_10k: float
    size_mb: float  # pickled size
    peak_mb: float
    rss_delta_mb: float
    train_score_n: int
    n_support: NotRequired[int]  # SVCs only


class CurveRow(TypedDict):
    model: str
    size: int
    train_acc: float
    test_acc: float
    fit_s: float


class SweepRow(TypedDict):
    n_components: int
    fit_s: float
    train_acc: float
    test_acc: float
    n_support: NotRequired[int]  # the SVC sweep


class KernelRow(TypedDict):
    kernel: str
    C: float
    fit_s: float
    predict_s_per_10k: float
    train_acc: float
    test_acc: float
    n_support: int


class CRow(TypedDict):
    C: float
    n_iter: int
    hit_max_iter: bool  # libsvm stopped at C_SWEEP_MAX_ITER, not at convergence
    coef: list[float]
    intercept: float
    n_support: int
    n_support_per_class: list[int]
    support: list[int]  # indices of the support vectors among the plotted points
    train_acc: float
    test_acc: float


@dataclass
class ModelResult:
    name: str
    estimator: str  # repr of the scikit-learn estimator
    representation: str
    row: ModelRow
    test_pred: np.ndarray  # (n_test,) int16
    test_confidence: np.ndarray  # (n_test,) float32: probability / score of the prediction
    # The fitted pipeline from raw images (skops), relative to the run folder; the store checks
    # its digest: an altered or missing file makes the step stale.
    model_file: str
    model_sha256: str
    versions: dict[str, str]  # of the libraries that fitted and saved it
    params: dict[str, Any]  # every scikit-learn parameter (nested ones as their repr)
    # A decision tree's accuracies cut at every depth 1..its own (see depth_cuts): the depth
    # sweep reads them instead of growing the same tree again. None for other models.
    depth_cuts: dict[str, Any] | None = None
    # the library that fitted it, with its version ("": stored before engines, scikit-learn)
    engine: str = ""

    @property
    def fitted_by(self) -> str:
        return self.engine or f"scikit-learn {self.versions.get('scikit-learn', '')}".strip()


@dataclass
class BestModel:
    name: str
    chosen_by: str
    confusion: np.ndarray  # (C, C) counts, rows = true
    error_images: np.ndarray  # (n, H, W) uint8
    error_true: np.ndarray
    error_pred: np.ndarray
    error_confidence: np.ndarray


@dataclass
class LearningCurve:
    sizes: list[int]
    rows: list[CurveRow]


@dataclass
class TreeDepth:
    depths: list[int]
    train_acc: list[float]
    val_acc: list[float]
    test_acc: list[float]
    leaf_depth_max: int
    best_depth: int
    fit_s: float
    n_fit: int
    from_leaderboard: bool = False  # the leaderboard's tree, cut (no tree grown for the sweep)


@dataclass
class SvcPca:
    n_train: int
    rows: list[SweepRow]


@dataclass
class SvcKernels:
    n_train: int
    n_components: int
    rows: list[KernelRow]


@dataclass
class CSweep:
    classes: list[int]
    points: np.ndarray  # (n, 2) training points in the 2-D PCA plane
    labels: np.ndarray  # 0/1
    rows: list[CRow]
    n_test: int


@dataclass
class TreePca:
    max_depth: int
    rows: list[SweepRow]


# ------------------------------------------------------------------ computations

def _accuracy(model, x, y) -> float:
    return float(np.mean(model.predict(x) == y))


def _confidence(model, x: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """How sure the model was of each prediction: its top probability, else its top score."""
    if hasattr(model, "predict_proba"):  # SVC(probability=False) hides it
        return model.predict_proba(x).max(axis=1).astype(np.float32)
    if hasattr(model, "decision_function"):
        scores = model.decision_function(x)
        return (scores.max(axis=1) if scores.ndim == 2 else np.abs(scores)).astype(np.float32)
    return np.ones(len(pred), np.float32)


def _predict_once(model, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """``model.predict(x)``, and the confidences when the same pass gives them: where
    scikit-learn defines predict() as the argmax of decision_function() (an SVC that breaks
    ties: one kernel pass over Fashion-MNIST's 10,000 test images instead of two)."""
    if (getattr(model, "break_ties", False) and model.decision_function_shape == "ovr"
            and len(model.classes_) > 2):
        scores = model.decision_function(x)
        return model.classes_[scores.argmax(axis=1)], scores.max(axis=1).astype(np.float32)
    return model.predict(x), None


def choose_representation(
    data: Dataset,
    *,
    max_train: int,
    validation_fraction: float,
    model_params: dict[str, dict[str, Any]],
    pca_components: int,
    pixel_transform: Literal["auto", "linear", "sqrt"],
    svc_sweep_max_train: int,
    seed: int,
    engine: str = "sklearn",
) -> Representation:
    """The pixel transform before PCA: fixed by the config, or the one whose RBF SVC (fitted on
    the sweep's sample) scores best on the validation split."""
    split = make_split(data, max_train, validation_fraction, seed)
    x, y = stratified_subset(split.x_fit, split.y_fit, svc_sweep_max_train, seed)
    if pixel_transform != "auto":
        return Representation(pixel_transform, {}, len(y))
    scores = {}
    for how in ("linear", "sqrt"):
        proj = PcaProjection(transform_pixels(x, how), pca_components)
        model = fit(make_classifier("svc-rbf", model_params.get("svc-rbf"), seed),
                    proj.transform(transform_pixels(x, how), pca_components), y, engine=engine)
        scores[how] = _accuracy(model, proj.transform(transform_pixels(split.x_val, how),
                                                      pca_components), split.y_val)
    return Representation(max(scores, key=scores.get), scores, len(y))


def _pca_inputs(split: Split, rep: Representation, n: int, x_train: np.ndarray | None = None):
    """Projection fitted on ``x_train`` (default: the fit split) after the chosen transform;
    returns the projection and a function mapping 0..1 pixels to its coordinates."""
    base = split.x_fit if x_train is None else x_train
    proj = PcaProjection(transform_pixels(base, rep.transform), n)
    return lambda x, k=n: proj.transform(transform_pixels(x, rep.transform), k)


def fit_model(
    data: Dataset,
    name: str,
    representation: Representation | None = None,
    *,
    max_train: int,
    validation_fraction: float,
    model_params: dict[str, dict[str, Any]],
    pca_components: int,
    train_score_sample: int,
    seed: int,
    files_dir: Path,
    files_key: str,
    depth_cuts_for_sweep: bool = False,
    engine: str = "sklearn",
) -> ModelResult:
    """Fit one model of the leaderboard and save it, with its inputs' preparation, as a
    scikit-learn pipeline from raw images in ``files_dir/NAME-KEY.skops`` (no pickle).
    ``depth_cuts_for_sweep``: a decision tree also scores itself cut at every depth, for the
    depth sweep to read (see :func:`tree_depth_sweep`). ``engine``: the library that fits it
    (see :mod:`mnistlab.models.fitting`); the model kept is scikit-learn's either way."""
    from joblib import parallel_config

    from ..models.pipeline import ImageInputs

    split = make_split(data, max_train, validation_fraction, seed)
    rep = "pixels"
    inputs = ImageInputs.from_projection(data.image_shape, "linear")
    with Measured() as cost:
        started = time.perf_counter()
        if name in PCA_MODELS:
            how = (representation or Representation("linear", {}, 0)).transform
            projection = PcaProjection(transform_pixels(split.x_fit, how), pca_components)
            inputs = ImageInputs.from_projection(data.image_shape, how, projection,
                                                 pca_components)
        x_fit, x_val, x_test = (inputs.features(x) for x in (split.x_fit, split.x_val,
                                                             split.x_test))
        pca_s = time.perf_counter() - started if name in PCA_MODELS else 0.0
        if name in PCA_MODELS:
            rep = (f"PCA-{x_fit.shape[1]}" if how == "linear"
                   else f"PCA-{x_fit.shape[1]} of {how}(pixels)")
        # the leaderboard keeps each model's test confidences: an SVC gives them with its
        # predictions in one pass
        model = make_classifier(name, model_params.get(name), seed, break_ties=True)
        started = time.perf_counter()
        # liblinear releases the GIL: the linear SVM's one-vs-rest problems fit in threads
        # instead of joblib's worker processes, whose start-up cost more than the fit (quick
        # profile: 3.0 -> 0.3 s; 20,000 Fashion-MNIST images: 9.9 -> 8.1 s; same coefficients)
        # liblinear reads float64: one copy for its ten fits, instead of one in each (54,000
        # Fashion-MNIST images, two threads: peak 1,708 -> 1,205 MiB, same coefficients)
        x_train = x_fit.astype(np.float64) if name == "linear-svm" else x_fit
        with parallel_config(prefer="threads") if not accelerates(model) else nullcontext():
            fit(model, x_train, split.y_fit, engine=engine)
        del x_train
        fit_s = time.perf_counter() - started + pca_s
    sample = _subset_index(len(split.y_fit), train_score_sample, seed)
    train_acc = _accuracy(model, x_fit[sample], split.y_fit[sample])
    val_acc = _accuracy(model, x_val, split.y_val)
    started = time.perf_counter()
    pred, confidence = _predict_once(model, x_test)
    predict_s = time.perf_counter() - started
    if confidence is None:
        confidence = _confidence(model, x_test, pred)
    row = {"model": name, "representation": rep, "n_fit": len(split.y_fit),
           "train_acc": train_acc, "val_acc": val_acc,
           "test_acc": float(np.mean(pred == split.y_test)), "fit_s": fit_s,
           "predict_s_per_10k": predict_s * 10_000 / len(x_test),
           "size_mb": len(pickle.dumps(model)) / 2**20, "peak_mb": cost.peak_mb,
           "rss_delta_mb": cost.delta_mb, "train_score_n": len(sample)}
    if hasattr(model, "n_support_"):
        row["n_support"] = int(model.n_support_.sum())

    saved = save_pipeline(inputs, model, files_dir / f"{name}-{files_key[:16]}.skops")
    cuts = depth_cuts(model, split) if depth_cuts_for_sweep else None
    return ModelResult(name, repr(model), rep, row, pred.astype(np.int16), confidence,
                       model_file=str(saved.relative_to(files_dir.parent)),
                       model_sha256=sha256_file(saved), versions=library_versions(),
                       params=_plain_params(model), depth_cuts=cuts,
                       engine=engine_label(engine, model))


def _plain_params(model) -> dict[str, Any]:
    plain = (bool, int, float, str, type(None))
    return {k: v if isinstance(v, plain) else repr(v)
            for k, v in sorted(model.get_params(deep=True).items())}


def _subset_index(n: int, size: int, seed: int) -> np.ndarray:
    return np.sort(np.random.default_rng(seed).choice(n, size=min(n, size), replace=False))


def best_model(data: Dataset, results: dict[str, ModelResult], *,
               n_errors_shown: int) -> BestModel:
    """The model with the best validation accuracy; its confusion matrix and surest errors."""
    from sklearn.metrics import confusion_matrix

    best = max(results.values(), key=lambda r: r.row["val_acc"])
    y = data.y_test
    confusion = confusion_matrix(y, best.test_pred, labels=range(data.n_classes))
    wrong = np.flatnonzero(best.test_pred != y)
    wrong = wrong[np.argsort(-best.test_confidence[wrong], kind="stable")][:n_errors_shown]
    return BestModel(best.name, "validation accuracy", confusion, data.x_test[wrong], y[wrong],
                     best.test_pred[wrong].astype(np.int64), best.test_confidence[wrong])


def learning_curve_point(
    data: Dataset,
    *,
    size: int,
    max_train: int,
    validation_fraction: float,
    model_params: dict[str, dict[str, Any]],
    seed: int,
    engine: str = "sklearn",
) -> SweepPoint:
    """One training-set size of the generative vs discriminative curve: Gaussian naive Bayes,
    logistic regression and the linear SVM fitted on a stratified sample of that size (None
    at or above the fit split's size, where the leaderboard's own fits stand instead)."""
    split = make_split(data, max_train, validation_fraction, seed)
    if size >= len(split.y_fit):
        return SweepPoint(None)
    x, y = stratified_subset(split.x_fit, split.y_fit, size, seed)
    rows = []
    for name in CURVE_MODELS:
        model = make_classifier(name, model_params.get(name), seed)
        if name == "linear-svm":  # a one-core step: its one-vs-rest fits one at a time
            model.set_params(n_jobs=1)
        started = time.perf_counter()
        fit(model, x, y, engine=engine)
        rows.append({"model": name, "size": size, "train_acc": _accuracy(model, x, y),
                     "test_acc": _accuracy(model, split.x_test, split.y_test),
                     "fit_s": time.perf_counter() - started})
    return SweepPoint({"size": size, "rows": rows})


def learning_curve(data: Dataset, points: dict[str, SweepPoint],
                   full: dict[str, ModelResult]) -> LearningCurve:
    """The curve's sizes, then the leaderboard's fits on the whole fit split as its last
    point."""
    rows = [row for point in gathered_rows(points) for row in point["rows"]]
    for name in CURVE_MODELS:
        if name in full:
            r = full[name].row
            rows.append({"model": name, "size": r["n_fit"], "train_acc": r["train_acc"],
                         "test_acc": r["test_acc"], "fit_s": r["fit_s"]})
    return LearningCurve(sorted({r["size"] for r in rows}), rows)


def truncated_tree_predictions(tree, x: np.ndarray, depths: list[int]) -> dict[int, np.ndarray]:
    """Predictions of ``tree`` cut at each depth, from one pass down the fitted tree.

    A tree grown depth-first to depth D, cut at depth d, is the tree fitted with max_depth=d
    (up to tie-breaking between equally good splits): the splits above depth d do not depend on
    how deep the tree may grow. So one fit replaces one fit per depth. scikit-learn numbers
    nodes in depth-first order, so the d-th node on a sample's decision path is its ancestor
    at depth d.
    """
    path = tree.decision_path(x).tocsr()
    starts, lengths = path.indptr[:-1], np.diff(path.indptr)
    node_class = tree.tree_.value[:, 0, :].argmax(axis=1)
    classes = tree.classes_
    out = {}
    for d in depths:
        node = path.indices[starts + np.minimum(d, lengths - 1)]
        out[d] = classes[node_class[node]]
    return out


def depth_cuts(tree, split: Split, depths: list[int] | None = None) -> dict[str, Any]:
    """Train, validation and test accuracy of ``tree`` cut at each of ``depths`` (default:
    every depth from 1 to the tree's own), and the depth it reached."""
    depths = depths or list(range(1, tree.get_depth() + 1))
    cuts: dict[str, Any] = {"depths": depths, "leaf_depth_max": int(tree.get_depth())}
    for part, x, y in (("train", split.x_fit, split.y_fit), ("val", split.x_val, split.y_val),
                       ("test", split.x_test, split.y_test)):
        preds = truncated_tree_predictions(tree, x, depths)
        cuts[part] = [float(np.mean(preds[d] == y)) for d in depths]
    return cuts


def tree_depth_sweep(data: Dataset, tree: ModelResult | None = None, *, max_train: int,
                     validation_fraction: float, tree_depths: list[int],
                     seed: int) -> TreeDepth:
    """Accuracy against max_depth, from the leaderboard's decision tree (``tree``, grown on the
    same split with the default parameters) cut at each depth, or from a tree grown here."""
    from sklearn.tree import DecisionTreeClassifier

    if tree is not None and tree.depth_cuts is not None:
        cuts, deepest = tree.depth_cuts, tree.depth_cuts["leaf_depth_max"]
        # cut deeper than the tree grew, it is the whole tree
        index = [min(d, deepest) - 1 for d in tree_depths]
        accs = {part: [cuts[part][i] for i in index] for part in ("train", "val", "test")}
        fit_s, n_fit, shared = tree.row["fit_s"], tree.row["n_fit"], True
    else:
        split = make_split(data, max_train, validation_fraction, seed)
        started = time.perf_counter()
        grown = DecisionTreeClassifier(max_depth=max(tree_depths), random_state=seed)
        grown.fit(split.x_fit, split.y_fit)
        fit_s, n_fit, shared = time.perf_counter() - started, len(split.y_fit), False
        accs = depth_cuts(grown, split, tree_depths)
        deepest = accs["leaf_depth_max"]
    best = tree_depths[int(np.argmax(accs["val"]))]
    return TreeDepth(tree_depths, accs["train"], accs["val"], accs["test"], deepest, best,
                     fit_s, n_fit, shared)


def _svc_on_sweep_sample(data: Dataset, rep: Representation, kernel: str, n_components: int,
                         max_train: int, validation_fraction: float,
                         model_params: dict[str, dict[str, Any]], svc_sweep_max_train: int,
                         seed: int, engine: str) -> SweepPoint:
    """An SVC of ``kernel`` on the first ``n_components`` of the sweeps' stratified sample: the
    row the PCA sweep and the kernel comparison both read (one fit where they meet)."""
    split = make_split(data, max_train, validation_fraction, seed)
    x, y = stratified_subset(split.x_fit, split.y_fit, svc_sweep_max_train, seed)
    if n_components > x.shape[1]:
        return SweepPoint(None, {"n_train": len(y)})
    project = _pca_inputs(split, rep, n_components, x)
    z, zt = project(x), project(split.x_test)
    name = f"svc-{kernel}"
    model = make_classifier(name, model_params.get(name), seed)
    started = time.perf_counter()
    fit(model, z, y, engine=engine)
    fit_s = time.perf_counter() - started
    started = time.perf_counter()
    pred = model.predict(zt)
    return SweepPoint({"kernel": kernel, "n_components": z.shape[1], "C": float(model.C),
                       "fit_s": fit_s,
                       "predict_s_per_10k": (time.perf_counter() - started) * 10_000 / len(zt),
                       "train_acc": _accuracy(model, z, y),
                       "test_acc": float(np.mean(pred == split.y_test)),
                       "n_support": int(model.n_support_.sum())},
                      {"n_train": len(y), "n_components": z.shape[1]})


def svc_pca_point(
    data: Dataset,
    rep: Representation,
    *,
    n_components: int,
    max_train: int,
    validation_fraction: float,
    model_params: dict[str, dict[str, Any]],
    svc_sweep_max_train: int,
    seed: int,
    kernel: Literal["rbf"] = "rbf",
    engine: str = "sklearn",
) -> SweepPoint:
    """One point of the SVC sweep over PCA sizes: an RBF SVC on the first ``n_components``
    (None above the number of pixels).

    The PCA is fitted with just these components: its covariance eigendecomposition gives
    the same first components whatever their number, so each point stands alone."""
    return _svc_on_sweep_sample(data, rep, kernel, n_components, max_train,
                                validation_fraction, model_params, svc_sweep_max_train, seed,
                                engine)


def svc_pca_sweep(data: Dataset, points: dict[str, SweepPoint]) -> SvcPca:
    return SvcPca(next(iter(points.values())).facts["n_train"], gathered_rows(points))


def svc_kernel_point(
    data: Dataset,
    rep: Representation,
    *,
    kernel: Literal["linear", "poly", "rbf", "sigmoid"],
    max_train: int,
    validation_fraction: float,
    model_params: dict[str, dict[str, Any]],
    pca_components: int,
    svc_sweep_max_train: int,
    seed: int,
    engine: str = "sklearn",
) -> SweepPoint:
    """One kernel of the SVC kernel comparison, on the sweep's sample and the PCA inputs (all
    the pixels' components where there are fewer than ``pca_components``)."""
    n_components = min(pca_components, int(np.prod(data.image_shape)))
    return _svc_on_sweep_sample(data, rep, kernel, n_components, max_train, validation_fraction,
                                model_params, svc_sweep_max_train, seed, engine)


def svc_kernels(data: Dataset, points: dict[str, SweepPoint]) -> SvcKernels:
    facts = next(iter(points.values())).facts
    return SvcKernels(facts["n_train"], facts["n_components"], gathered_rows(points))


def c_sweep(
    data: Dataset,
    *,
    max_train: int,
    validation_fraction: float,
    c_classes: list[int],
    c_max_train: int,
    c_values: list[float],
    seed: int,
) -> CSweep:
    from sklearn.svm import SVC

    a, b = c_classes
    split = make_split(data, max_train, validation_fraction, seed)
    pick = np.isin(split.y_fit, [a, b])
    x, y = stratified_subset(split.x_fit[pick], (split.y_fit[pick] == b).astype(np.int64),
                             c_max_train, seed)
    proj = PcaProjection(x, 2)
    z = proj.transform(x, 2)
    test = np.isin(split.y_test, [a, b])
    zt, yt = proj.transform(split.x_test[test], 2), (split.y_test[test] == b).astype(np.int64)
    rows = []
    for c in c_values:
        # max_iter bounds libsvm on nearly-hard margins (C = 1e5 on overlapping points); the
        # report says when it was reached (its warning is ignored: see the module's filter).
        model = SVC(kernel="linear", C=c, max_iter=C_SWEEP_MAX_ITER).fit(z, y)
        rows.append({"C": c, "n_iter": int(np.max(model.n_iter_)),
                     "hit_max_iter": bool(np.max(model.n_iter_) >= C_SWEEP_MAX_ITER),
                     "coef": model.coef_[0].tolist(), "intercept": float(model.intercept_[0]),
                     "n_support": int(model.n_support_.sum()),
                     "n_support_per_class": model.n_support_.tolist(),
                     "support": model.support_.tolist(), "train_acc": _accuracy(model, z, y),
                     "test_acc": _accuracy(model, zt, yt)})
    return CSweep([a, b], z.astype(np.float32), y, rows, int(test.sum()))


def tree_pca_point(
    data: Dataset,
    depth: TreeDepth,
    *,
    n_components: int,
    max_train: int,
    validation_fraction: float,
    seed: int,
) -> SweepPoint:
    """One point of seed 3.4: a decision tree of the best depth on the first ``n_components``
    principal components (a PCA of just these: see :func:`svc_pca_point`)."""
    from sklearn.tree import DecisionTreeClassifier

    split = make_split(data, max_train, validation_fraction, seed)
    proj = PcaProjection(split.x_fit, n_components)
    if n_components > proj.components.shape[0]:  # more than samples or pixels
        return SweepPoint(None)
    z, zt = proj.transform(split.x_fit, n_components), proj.transform(split.x_test, n_components)
    started = time.perf_counter()
    tree = DecisionTreeClassifier(max_depth=depth.best_depth, random_state=seed).fit(
        z, split.y_fit)
    return SweepPoint({"n_components": n_components, "fit_s": time.perf_counter() - started,
                       "train_acc": _accuracy(tree, z, split.y_fit),
                       "test_acc": _accuracy(tree, zt, split.y_test)})


def tree_pca_sweep(data: Dataset, depth: TreeDepth, points: dict[str, SweepPoint]) -> TreePca:
    return TreePca(depth.best_depth, gathered_rows(points))


@dataclass
class _Binder:
    """How the classic section binds its steps: the study's parameters, seed and engine."""

    params: Params
    seed: int
    engine: str

    def step(self, step_name: str, fn, /, needs: dict | None = None, **given) -> Step:
        return bind(step_name, fn, self.params, self.seed, needs=needs, **given)

    def one_core_step(self, step_name: str, fn, /, needs: dict | None = None,
                      **given) -> Step:
        """A step whose fit runs on one core (libsvm, a tree): two compute side by side."""
        return bind(step_name, fn, self.params, self.seed, needs=needs, one_core=True, **given)

    def by_engine(self, *names: str) -> dict:
        """The engine, as an argument of a step that fits a model it accelerates (its key reads
        it); under scikit-learn, keys as before engines were a setting."""
        if self.engine != "sklearn" and any(MODELS[n].accelerated for n in names):
            return {"engine": self.engine}
        return {}

    def on_one_core(self, *names: str) -> bool:
        """A step fitting ``names`` computes on one core, beside another such step (libsvm,
        liblinear, a tree), unless the engine accelerates one of them: oneDAL computes on every
        core, and takes its thread count (n_jobs) only in the main thread."""
        return not self.by_engine(*names)

    def fit_step(self, *names: str):
        return self.one_core_step if self.on_one_core(*names) else self.step

    def estimator_params(self, *names: str) -> dict:
        """model_params restricted to the models a step fits (its key reads only those)."""
        params = self.params
        chosen = {n: params.model_params[n] for n in names if n in params.model_params}
        if "hist-gb" in names and params.boosting_max_bins != 255:  # else keys as before it
            chosen["hist-gb"] = {"max_bins": params.boosting_max_bins, **chosen.get("hist-gb", {})}
        return chosen


def plan(data: Dataset, params: Params, seed: int, engine: str = "sklearn",
         earlier: Mapping[str, Step] | None = None) -> list[Step]:
    for c in params.c_classes:
        if not 0 <= c < data.n_classes:
            raise ConfigError(f"classic.c_classes: class {c} does not exist "
                              f"(0..{data.n_classes - 1})")
    binder = _Binder(params, seed, engine)
    step, one_core_step, by_engine = binder.step, binder.one_core_step, binder.by_engine
    fit_step, estimator_params = binder.fit_step, binder.estimator_params

    # The depth sweep cuts the leaderboard's tree when it is grown with the default parameters
    # on the same split (30 s on Fashion-MNIST, once instead of twice), else grows its own.
    shares_tree = "decision-tree" in params.models and "decision-tree" not in params.model_params
    # A PCA and SVCs on a sample: 5.6 s on one BLAS thread, 5.7 s on two (Fashion-MNIST).
    steps = [fit_step("svc-rbf")("representation", choose_representation,
                                 model_params=estimator_params("svc-rbf"),
                                 **by_engine("svc-rbf"))]
    n_fit = round(min(params.max_train or len(data.y_train), len(data.y_train))
                  * (1 - params.validation_fraction))
    one_core = {name for name, info in MODELS.items()
                if info.one_core and binder.on_one_core(name)}
    if n_fit < ONE_CORE_BOOSTING_BELOW:
        one_core.add("hist-gb")
    for name in params.models:
        uses_pca = name in PCA_MODELS
        cuts = {"depth_cuts_for_sweep": True} if name == "decision-tree" and shares_tree else {}
        steps.append((one_core_step if name in one_core else step)(
                          f"model:{name}", fit_model, files=True,
                          needs={"representation": "representation"} if uses_pca else None,
                          name=name, model_params=estimator_params(name),
                          pca_components=params.pca_components if uses_pca else 0, **cuts,
                          **by_engine(name)))
    models = {name: f"model:{name}" for name in params.models}
    steps += [
        step("best", best_model, needs={"results": models}),
    ]
    # One step per training-set size, needing no model of the leaderboard, so that its points
    # compute beside the long one-core fits instead of alone at the section's end (24 s with
    # the other core idle, Fashion-MNIST). Naive Bayes, logistic regression and the one-vs-rest
    # linear SVM, one fit at a time: 9.8 s on one core; 12.0 s with two BLAS threads and the
    # SVM on two.
    steps += sweep("learning_curve", learning_curve_point, learning_curve, params, seed,
                   over="size", values=params.learning_curve_sizes,
                   one_core=binder.on_one_core(*CURVE_MODELS),
                   gather_needs={"full": {m: s for m, s in models.items() if m in CURVE_MODELS}},
                   model_params=estimator_params(*CURVE_MODELS), **by_engine(*CURVE_MODELS))
    steps.append(one_core_step("tree_depth", tree_depth_sweep,
                               needs={"tree": "model:decision-tree"} if shares_tree else None))
    # Sweeps of independent points: one step per point, so that workers share them.
    # kernel="rbf" is the default; written out, it keys the points that also give the
    # kernel comparison its prediction time (a point stored before that has none).
    steps += sweep("svc_pca", svc_pca_point, svc_pca_sweep, params, seed,
                   over="n_components", values=params.svc_pca_components,
                   needs={"rep": "representation"}, model_params=estimator_params("svc-rbf"),
                   kernel="rbf", one_core=binder.on_one_core("svc-rbf"),
                   **by_engine("svc-rbf"))
    # The RBF kernel on pca_components is the PCA sweep's point of that size: the same sample,
    # components and SVC (12 s of one core on Fashion-MNIST, fitted once instead of twice).
    kernel_points = {}
    for kernel in params.kernels:
        if (kernel == "rbf" and params.pca_components in params.svc_pca_components
                and params.pca_components <= int(np.prod(data.image_shape))):
            kernel_points[kernel] = f"svc_pca:{params.pca_components}"
            continue
        kernel_points[kernel] = f"svc_kernels:{kernel}"
        steps.append(fit_step(f"svc-{kernel}")(
            f"svc_kernels:{kernel}", svc_kernel_point, needs={"rep": "representation"},
            kernel=kernel, model_params=estimator_params(f"svc-{kernel}"),
            **by_engine(f"svc-{kernel}")))
    steps.append(step("svc_kernels", svc_kernels, needs={"points": kernel_points}))
    # scikit-learn's libsvm whatever the engine: the margin figure reports when its iterations
    # reached max_iter, which oneDAL's SVC does not take
    steps.append(one_core_step("c_sweep", c_sweep))
    steps += sweep("tree_pca", tree_pca_point, tree_pca_sweep, params, seed,
                   over="n_components", values=params.tree_pca_components,
                   needs={"depth": "tree_depth"}, gather_needs={"depth": "tree_depth"},
                   one_core=True)
    return steps
