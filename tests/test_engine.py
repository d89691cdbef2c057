"""The engine setting: scikit-learn-intelex (oneDAL) fits the estimators it accelerates, every
model kept is scikit-learn's, and a machine without the package still loads and predicts them."""

import csv
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import skops.io as sio
from sklearn.datasets import load_digits
from sklearn.ensemble import RandomForestClassifier
from sklearn.neighbors import KNeighborsClassifier

from mnistlab import load_dataset
from mnistlab.core.errors import ConfigError
from mnistlab.models import fitting as engine
from mnistlab.models.svc import SVC
from mnistlab.study.config import build_config
from mnistlab.study.runner import plan_study

HAS_SKLEARNEX = engine.sklearnex_problem() is None
needs_sklearnex = pytest.mark.skipif(not HAS_SKLEARNEX, reason="scikit-learn-intelex absent")
# A Python in which scikit-learn-intelex cannot be imported: a machine without it.
WITHOUT_SKLEARNEX = ("import sys\nfor m in ('sklearnex', 'daal4py', 'onedal'): sys.modules[m] = None\n"
                     "from mnistlab.cli import main\nsys.argv[0] = 'mnistlab'\nmain()\n")


def run_without_sklearnex(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", WITHOUT_SKLEARNEX, *args], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "COLUMNS": "200"})


def test_auto_falls_back_to_scikit_learn_in_one_line_and_sklearnex_is_refused(monkeypatch):
    monkeypatch.setattr(engine, "sklearnex_problem", lambda: "scikit-learn-intelex is not "
                                                             "installed")
    auto = engine.resolve_engine("auto")
    assert auto.name == "sklearn" and auto.label.startswith("scikit-learn 1.")
    assert "\n" not in auto.note and "not installed" in auto.note and "mnistlab[fast]" in auto.note
    with pytest.raises(ConfigError, match=r"^engine = sklearnex: scikit-learn-intelex is not "
                                          r"installed \(pip install 'mnistlab\[fast\]'\)$"):
        engine.resolve_engine("sklearnex")
    assert engine.resolve_engine("sklearn").name == "sklearn"


@needs_sklearnex
def test_auto_takes_sklearnex_where_it_is_installed():
    auto = engine.resolve_engine("auto")
    assert auto.name == "sklearnex" and auto.label.startswith("scikit-learn-intelex 20")
    assert engine.ACCELERATED in auto.note


@needs_sklearnex
def test_the_engine_keys_exactly_the_steps_that_fit_an_estimator_it_accelerates():
    data = load_dataset("digits")
    plans = {name: {f"{p.section}.{p.step.name}": p for p in
                    plan_study(data, build_config("quick", engine=name))}
             for name in ("sklearn", "sklearnex")}
    keyed = {step for step, p in plans["sklearnex"].items() if "engine" in p.step.arguments}
    assert keyed == {
        "classic.representation",
        *(f"classic.model:{m}" for m in ("svc-rbf", "random-forest", "knn")),
        *(f"classic.svc_pca:{n}" for n in (10, 20, 50)),
        *(f"classic.svc_kernels:{k}" for k in ("linear", "poly", "rbf", "sigmoid"))}
    for step, planned in plans["sklearnex"].items():
        before = plans["sklearn"][step]
        if step in keyed:  # on every core: oneDAL takes n_jobs only in the main thread
            assert planned.key != before.key and not planned.step.one_core, step
        elif not planned.needed_keys:  # nothing it reads changed with the engine
            assert planned.key == before.key, step
    assert plans["sklearn"]["classic.model:svc-rbf"].step.one_core


def _digits():
    x, y = load_digits(return_X_y=True)
    x = (x / 16).astype(np.float32)
    return x[:1300], y[:1300], x[1300:]


@needs_sklearnex
@pytest.mark.parametrize("plain", [
    SVC(C=10, break_ties=True), SVC(kernel="poly"), RandomForestClassifier(random_state=0),
    KNeighborsClassifier(weights="distance", algorithm="brute")],
    ids=lambda e: type(e).__name__ + getattr(e, "kernel", ""))
def test_an_accelerated_fit_comes_back_as_scikit_learns_and_predicts_what_onedal_did(plain):
    import importlib

    x, y, x_test = _digits()
    module, name = engine.TWINS[next(f"{c.__module__}.{c.__qualname__}" for c in
                                     type(plain).__mro__
                                     if f"{c.__module__}.{c.__qualname__}" in engine.TWINS)]
    twin = getattr(importlib.import_module(module), name)(**plain.get_params()).fit(x, y)
    fitted = engine.fit(plain, x, y, engine="sklearnex")
    assert fitted is plain and not type(fitted).__module__.startswith(("sklearnex", "daal4py"))
    assert np.array_equal(fitted.predict(x_test), twin.predict(x_test))
    if isinstance(fitted, SVC):  # and through libsvm, scikit-learn's own path
        from sklearn import svm

        assert np.array_equal(svm.SVC.predict(fitted, x_test), twin.predict(x_test))
    if hasattr(fitted, "predict_proba"):
        assert np.allclose(fitted.predict_proba(x_test), twin.predict_proba(x_test), atol=0.01)
    saved = sio.dumps(fitted)  # skops cannot write oneDAL's model at all
    assert not [t for t in sio.get_untrusted_types(data=saved) if "sklearnex" in t
                or "onedal" in t or "daal" in t]


def test_an_unknown_engine_is_one_line():
    with pytest.raises(ConfigError, match=r"^config: engine: Input should be 'auto', 'sklearn' "
                                          r"or 'sklearnex' \(got 'mkl'\)$"):
        build_config("quick", engine="mkl")


@pytest.mark.slow
@pytest.mark.cli
def test_sklearnex_asked_for_where_it_cannot_be_imported_is_one_line(tmp_path):
    result = run_without_sklearnex("study", "--dataset", "digits", "--profile", "quick",
                                   "--engine", "sklearnex", "--out", str(tmp_path / "run"))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "engine = sklearnex: scikit-learn-intelex" in lines[0]
    assert "pip install 'mnistlab[fast]'" in lines[0]


@needs_sklearnex
@pytest.mark.slow
@pytest.mark.cli
def test_models_fitted_by_sklearnex_load_and_predict_the_same_labels_without_it(quick_run,
                                                                                tmp_path):
    board = json.loads((quick_run / "leaderboard.json").read_text())["models"]
    engines = {row["model"]: row["engine"] for row in board}
    for name in ("svc-rbf", "random-forest", "knn"):
        assert engines[name].startswith("scikit-learn-intelex 20"), engines
    for name in ("gaussian-nb", "logistic", "linear-svm", "decision-tree", "hist-gb"):
        assert engines[name].startswith("scikit-learn 1."), engines
    assert engines["cnn-fast"] == "PyTorch"
    data = load_dataset("mnist-5k")
    np.savez(tmp_path / "test.npz", x_test=data.x_test, y_test=data.y_test)
    result = run_without_sklearnex("predict", str(quick_run), str(tmp_path / "test.npz"),
                                   "--csv", "--model", "svc-rbf", "--model", "random-forest",
                                   "--model", "knn")
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    from mnistlab import load_study

    stored = load_study(quick_run).results["classic"]
    for name in ("svc-rbf", "random-forest", "knn"):
        labels = np.array([int(r["class"]) for r in rows if r["model"] == name])
        assert np.array_equal(labels, stored[f"model:{name}"].test_pred), name
    report = (quick_run / "report.html").read_text()
    assert "model:svc-rbf (scikit-learn-intelex)" in report


def test_the_registry_says_which_models_the_engine_accelerates():
    """Planning reads ModelInfo.accelerated (no scikit-learn import); it must agree with the
    engine's twins."""
    from mnistlab.sections.classic import MODELS, make_classifier

    for name, info in MODELS.items():
        assert info.accelerated == engine.accelerates(make_classifier(name)), name
