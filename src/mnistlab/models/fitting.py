"""Which library fits the scikit-learn estimators: scikit-learn itself, or
scikit-learn-intelex ("sklearnex": Intel's oneDAL behind scikit-learn's API, on any x86-64 CPU)
for the estimators it accelerates.

The study's ``engine`` setting is "auto", "sklearn" or "sklearnex"; :func:`resolve_engine` turns
it into the one that runs here, and that name is an argument of every step that fits an
accelerated estimator, so results of one engine are never served for the other.

Every model a study keeps is plain scikit-learn: an accelerated fit is converted back
(:func:`to_sklearn`) before it predicts, scores or is saved. A saved model then loads and
predicts where sklearnex is not installed, and skops can save it at all (writing a sklearnex
estimator aborts the process: oneDAL's model handles cannot be serialised). The conversion is
written here because sklearnex offers none.
"""

from __future__ import annotations

import contextlib
import functools
import platform
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Literal, get_args

from ..core.errors import ConfigError
from ..engine.measure import cores_given

EngineSetting = Literal["auto", "sklearn", "sklearnex"]
ENGINE_SETTINGS = get_args(EngineSetting)
PACKAGE = "scikit-learn-intelex"
INSTALL = "pip install 'mnistlab[fast]'"

# scikit-learn class -> its sklearnex twin (module, name), for the estimators the study fits.
TWINS = {
    "sklearn.svm._classes.SVC": ("sklearnex.svm", "SVC"),
    "sklearn.ensemble._forest.RandomForestClassifier": ("sklearnex.ensemble",
                                                        "RandomForestClassifier"),
    "sklearn.neighbors._classification.KNeighborsClassifier": ("sklearnex.neighbors",
                                                               "KNeighborsClassifier"),
}
ACCELERATED = "SVC, random forest and k-NN"  # what TWINS covers, as the CLI, config and report say it
# A twin's own state: oneDAL's model and its caches, which the scikit-learn class has no use for.
_ONEDAL_ONLY = {"_onedal_estimator", "_cached_estimators_", "_shape", "_dual_coef_internal",
                "_support_vectors_internal", "_intercept_internal"}


@dataclass(frozen=True)
class Engine:
    """The engine a study runs on here."""

    name: Literal["sklearn", "sklearnex"]
    label: str  # as the report and the leaderboard write it, with the version
    note: str  # the one line the study prints about it


@functools.cache
def sklearnex_problem() -> str | None:
    """Why scikit-learn-intelex cannot run here, or None when it can. Imports nothing (a study
    with nothing left to compute imports no scikit-learn): an install too broken to import
    says so, in one line, at the first fit."""
    import importlib.util

    machine = platform.machine().lower()
    if machine not in ("x86_64", "amd64"):
        return f"oneDAL runs on x86-64 CPUs and this one is {machine}"
    try:
        version(PACKAGE)
    except PackageNotFoundError:
        return f"{PACKAGE} is not installed"
    try:
        found = importlib.util.find_spec("sklearnex") is not None
    except (ImportError, ValueError):  # a module blocked or half-imported
        found = False
    if not found:
        return f"{PACKAGE} is installed but its sklearnex module cannot be found"
    return None


def _label(package: str) -> str:
    """A library as the report and the leaderboard name it: with its version."""
    return f"{package} {version(package)}"


def resolve_engine(setting: str) -> Engine:
    """The engine ``setting`` means on this machine. "sklearnex" where it cannot run is a
    one-line :class:`ConfigError`; "auto" then falls back to scikit-learn and says why."""
    if setting not in ENGINE_SETTINGS:
        raise ConfigError(f"engine {setting!r}: must be one of {', '.join(ENGINE_SETTINGS)}")
    sklearn_label = _label("scikit-learn")
    if setting == "sklearn":
        return Engine("sklearn", sklearn_label, f"engine: {sklearn_label} (as asked)")
    problem = sklearnex_problem()
    if problem is None:
        label = _label(PACKAGE)
        return Engine("sklearnex", label, f"engine: {label} for {ACCELERATED}; "
                                          f"{sklearn_label} for the other models")
    if setting == "sklearnex":
        raise ConfigError(f"engine = sklearnex: {problem} ({INSTALL})")
    return Engine("sklearn", sklearn_label,
                  f"engine: {sklearn_label} ({problem}; {INSTALL} for the accelerated one)")


def engine_label(engine: str, estimator: Any) -> str:
    """Which library fitted ``estimator`` under ``engine`` (a resolved name), as the report
    and the leaderboard write it."""
    return _label(PACKAGE if engine == "sklearnex" and accelerates(estimator)
                  else "scikit-learn")


def _twin_path(estimator: Any) -> tuple[str, str] | None:
    for cls in type(estimator).__mro__:
        twin = TWINS.get(f"{cls.__module__}.{cls.__qualname__}")
        if twin is not None:
            return twin
    return None


def accelerates(estimator: Any) -> bool:
    """sklearnex has a twin of ``estimator``'s class (imports nothing)."""
    return _twin_path(estimator) is not None


def _twin_class(estimator: Any) -> type | None:
    import importlib

    twin = _twin_path(estimator)
    if twin is None:
        return None
    try:
        return getattr(importlib.import_module(twin[0]), twin[1])
    except Exception as exc:  # a Dask worker without it, an install too broken to import
        raise ConfigError(f"engine sklearnex: {PACKAGE} cannot be imported where this step "
                          f"runs ({type(exc).__name__}: {exc}); {INSTALL}, or engine = "
                          "sklearn") from None


def fit(estimator: Any, x, y=None, *, engine: str = "sklearn") -> Any:
    """``estimator.fit(x, y)``, by ``engine`` (a resolved name): with "sklearnex", an
    estimator it accelerates is fitted by its twin, on the cores the study gives this step,
    and converted back into ``estimator`` (which is returned, fitted, of its own class)."""
    twin_class = _twin_class(estimator) if engine == "sklearnex" else None
    if twin_class is None:
        return estimator.fit(x, y)
    params = estimator.get_params(deep=False)
    cores = cores_given()
    twin = twin_class(**{**params, "n_jobs": cores or params.get("n_jobs")})
    with _onedal_threads(cores):
        twin.fit(x, y)
    return to_sklearn(twin, estimator)


@contextlib.contextmanager
def _onedal_threads(cores: int | None) -> Iterator[None]:
    """In the main thread, the twin's n_jobs sets oneDAL's threads. sklearnex reads n_jobs only
    there; elsewhere it warns and takes every core. A Dask worker computes its one step at a
    time in a thread of its own: there its share is set for the process, for the fit."""
    if threading.current_thread() is threading.main_thread():
        yield
        return
    import daal4py

    before = daal4py.num_threads()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="'Threading' parallel backend")
        try:
            if cores:
                daal4py.daalinit(cores)
            yield
        finally:
            daal4py.daalinit(before)


def to_sklearn(twin: Any, plain: Any) -> Any:
    """``plain`` (an unfitted scikit-learn estimator of the class ``twin`` stands for, with its
    parameters) given ``twin``'s fitted model; returns ``plain``."""
    import numpy as np
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.svm import SVC

    parameters = twin.get_params(deep=False)
    state = {k: v for k, v in vars(twin).items() if k not in _ONEDAL_ONLY and k not in parameters}
    if isinstance(plain, SVC):
        # sklearnex keeps them as properties over oneDAL's float32 model; libsvm reads float64
        # coefficients and int32 indices, C-contiguous
        state.update(
            support_vectors_=np.ascontiguousarray(twin.support_vectors_, np.float64),
            _dual_coef_=np.ascontiguousarray(twin._dual_coef_, np.float64),
            dual_coef_=np.ascontiguousarray(twin.dual_coef_, np.float64),
            _intercept_=np.ascontiguousarray(twin._intercept_, np.float64),
            intercept_=np.ascontiguousarray(twin.intercept_, np.float64),
            support_=np.ascontiguousarray(twin.support_, np.int32),
            _n_support=np.ascontiguousarray(twin._n_support, np.int32),
            _gamma=float(twin._gamma))
        n_pairs = len(twin.classes_) * (len(twin.classes_) - 1) // 2
        if not twin.probability:  # libsvm reads these only for probabilities
            state.update(_probA=np.empty(0), _probB=np.empty(0))
        # oneDAL does not say how many iterations each pair took: n_iter_ reads 0 for each
        state.update(_effective_probability=bool(twin.probability),
                     _num_iter=np.zeros(n_pairs, np.int32))
    elif isinstance(plain, RandomForestClassifier):
        state["estimators_"] = list(twin.estimators_)  # oneDAL's trees as scikit-learn's
    for key, value in state.items():
        setattr(plain, key, value)
    return plain
