import dataclasses

import numpy as np
import pytest
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier

from mnistlab import build_config, load_dataset
from mnistlab.core.errors import ConfigError
from mnistlab.engine.step import call_step, call_sweep
from mnistlab.models.persistence import load_pipeline
from mnistlab.sections import classic as c

FLOORS = {"gaussian-nb": 0.5, "bernoulli-nb": 0.75, "logistic": 0.85, "linear-svm": 0.85,
          "svc-rbf": 0.9, "decision-tree": 0.6, "random-forest": 0.85, "knn": 0.85,
          "hist-gb": 0.85, "svc-poly": 0.85, "svc-linear": 0.85, "svc-sigmoid": 0.5}


@pytest.fixture(scope="module")
def mnist5k():
    return load_dataset("mnist-5k")


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def params():
    return c.Params(**{**c.QUICK, "max_train": 2000})


@pytest.mark.parametrize("name", sorted(FLOORS))
def test_every_model_learns_mnist_5k(mnist5k, params, name, tmp_path):
    result = call_step(c.fit_model, mnist5k, params, name=name, files_dir=tmp_path / "models",
                       files_key="0123456789abcdef0123")
    row = result.row
    assert row["test_acc"] > FLOORS[name], row
    assert 0 <= row["val_acc"] <= 1 and row["train_acc"] >= row["test_acc"] - 0.05
    assert row["fit_s"] > 0 and row["size_mb"] > 0 and row["peak_mb"] > 0
    assert result.test_pred.shape == mnist5k.y_test.shape
    assert np.mean(result.test_pred == mnist5k.y_test) == pytest.approx(row["test_acc"])
    # the saved pipeline reads raw images and predicts exactly what the study measured
    assert result.model_file == f"models/{name}-0123456789abcdef.skops"
    saved = load_pipeline(tmp_path / result.model_file, result.versions, c.TRUSTED_TYPES)
    assert np.array_equal(saved.predict(mnist5k.x_test), result.test_pred)


def test_truncated_tree_equals_trees_refitted_at_each_depth(mnist5k):
    x = mnist5k.x_train.reshape(4000, -1).astype(np.float32) / 255
    xt = mnist5k.x_test.reshape(1000, -1).astype(np.float32) / 255
    deep = DecisionTreeClassifier(max_depth=12, random_state=0).fit(x, mnist5k.y_train)
    cut = c.truncated_tree_predictions(deep, xt, [1, 3, 6, 12])
    for depth, pred in cut.items():
        refit = DecisionTreeClassifier(max_depth=depth, random_state=0).fit(x, mnist5k.y_train)
        agreement = np.mean(refit.predict(xt) == pred)
        assert agreement > 0.97, (depth, agreement)  # only tie-breaking may differ
    assert np.array_equal(cut[12], deep.predict(xt))


def test_best_depth_is_chosen_without_the_test_set(mnist5k, params):
    honest = call_step(c.tree_depth_sweep, mnist5k, params)
    rng = np.random.default_rng(0)
    scrambled = dataclasses.replace(mnist5k, y_test=rng.permutation(mnist5k.y_test))
    blind = call_step(c.tree_depth_sweep, scrambled, params)
    assert blind.best_depth == honest.best_depth
    assert blind.val_acc == honest.val_acc and blind.test_acc != honest.test_acc
    assert honest.best_depth == honest.depths[int(np.argmax(honest.val_acc))]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_c_sweep_counts_the_estimators_support_vectors(mnist5k, params):
    sweep = call_step(c.c_sweep, mnist5k, params)
    assert sweep.classes == [0, 1] and set(np.unique(sweep.labels)) == {0, 1}
    for row in sweep.rows:
        model = SVC(kernel="linear", C=row["C"], max_iter=c.C_SWEEP_MAX_ITER).fit(
            sweep.points, sweep.labels)
        assert row["n_support"] == int(model.n_support_.sum()) == len(row["support"])
        assert row["n_support_per_class"] == model.n_support_.tolist()
    assert sweep.rows[0]["n_support"] > sweep.rows[-1]["n_support"]  # small C: wide margin


def test_representation_is_chosen_on_validation_and_feeds_the_pca_models(mnist5k, params,
                                                                          tmp_path):
    rep = call_step(c.choose_representation, mnist5k, params)
    assert set(rep.val_acc) == {"linear", "sqrt"}
    assert rep.transform == max(rep.val_acc, key=rep.val_acc.get)
    fixed = call_step(c.choose_representation, mnist5k, params, pixel_transform="sqrt")
    assert fixed.transform == "sqrt" and fixed.val_acc == {}
    result = call_step(c.fit_model, mnist5k, params, name="svc-rbf", representation=fixed,
                       files_dir=tmp_path, files_key="k" * 24)
    assert result.row["representation"] == "PCA-100 of sqrt(pixels)"
    assert result.row["test_acc"] > 0.9


def test_representation_choice_ignores_the_test_labels(mnist5k, params):
    honest = call_step(c.choose_representation, mnist5k, params)
    rng = np.random.default_rng(1)
    scrambled = dataclasses.replace(mnist5k, y_test=rng.permutation(mnist5k.y_test))
    blind = call_step(c.choose_representation, scrambled, params)
    assert blind.transform == honest.transform and blind.val_acc == honest.val_acc


def test_kernels_and_svc_sweep_report_support_vectors(mnist5k, params):
    rep = c.Representation("linear", {}, 0)
    kernels = c.svc_kernels(mnist5k, {k: call_step(c.svc_kernel_point, mnist5k, params, rep=rep,
                                                  kernel=k) for k in params.kernels})
    assert [r["kernel"] for r in kernels.rows] == ["linear", "poly", "rbf", "sigmoid"]
    assert all(r["n_support"] > 0 and r["fit_s"] > 0 for r in kernels.rows)
    assert kernels.n_components == params.pca_components
    sweep = call_sweep(c.svc_pca_point, c.svc_pca_sweep, mnist5k, params, over="n_components",
                       values=params.svc_pca_components, rep=rep)
    assert [r["n_components"] for r in sweep.rows] == params.svc_pca_components


def test_the_rbf_kernel_point_is_the_pca_sweeps_point_of_that_size(mnist5k, digits, params):
    """Where the kernel comparison's PCA size is a point of the SVC sweep, the plan fits that
    SVC once: the comparison reads the sweep's point, which holds what its own point would."""
    from mnistlab.study.runner import plan_study

    params = params.model_copy(update={"pca_components": 20})
    rep = c.Representation("linear", {}, 0)
    own = call_step(c.svc_kernel_point, mnist5k, params, rep=rep, kernel="rbf").row
    shared = call_step(c.svc_pca_point, mnist5k, params, rep=rep, n_components=20).row
    timings = {"fit_s", "predict_s_per_10k"}
    assert {k: v for k, v in own.items() if k not in timings} == \
        {k: v for k, v in shared.items() if k not in timings}
    assert timings <= own.keys() & shared.keys()

    def kernel_steps(data):
        planned = {p.step.name: p.step for p in plan_study(data, build_config("full"))
                   if p.section == "classic"}
        return {n for n in planned if n.startswith("svc_kernels:")}, \
            planned["svc_kernels"].needs["points"]

    names, points = kernel_steps(mnist5k)  # 784 pixels: PCA-100 is a point of the sweep
    assert "svc_kernels:rbf" not in names and points["rbf"] == "svc_pca:100"
    names, points = kernel_steps(digits)  # 64 pixels: the sweep has no point of 100
    assert "svc_kernels:rbf" in names and points["rbf"] == "svc_kernels:rbf"


@pytest.mark.parametrize("override, message", [
    ({"models": ["logistic", "xgboost"]}, "classic.models.1: Input should be 'gaussian-nb'"),
    ({"model_params": {"svc-rbf": {"C": -1}}}, "model_params.svc-rbf: The 'C' parameter of SVC "
                                               "must be a float in the range (0.0, inf]"),
    ({"model_params": {"svc-rbf": {"gama": 1}}}, "model_params.svc-rbf: Invalid parameter 'gama'"),
    ({"model_params": {"deep-forest": {}}}, "model_params: unknown model 'deep-forest'"),
    ({"tree_depths": [0, 3]}, "classic.tree_depths: Value error"),
    ({"c_values": [0.0, 1.0]}, "every C must be > 0"),
])
def test_bad_model_names_and_parameters_are_rejected(override, message):
    with pytest.raises(ConfigError) as info:
        build_config("full", {"classic": override})
    assert message in str(info.value)


def test_c_classes_must_exist(mnist5k, params):
    with pytest.raises(ConfigError, match="classic.c_classes: class 12 does not exist"):
        c.plan(mnist5k, params.model_copy(update={"c_classes": [0, 12]}), 0)


def test_an_svc_predicts_and_gives_confidences_in_one_kernel_pass(mnist5k):
    x, y = mnist5k.x_train[:600].reshape(600, -1) / 255.0, mnist5k.y_train[:600]
    x_test = mnist5k.x_test[:300].reshape(300, -1) / 255.0
    model = c.make_classifier("svc-rbf", break_ties=True).fit(x, y)
    passes, decision_function = [], model.decision_function
    model.decision_function = lambda images: passes.append(len(images)) or decision_function(
        images)
    pred, confidence = c._predict_once(model, x_test)
    assert passes == [300]
    assert np.array_equal(pred, model.predict(x_test))  # scikit-learn's own predict()
    assert np.array_equal(confidence, decision_function(x_test).max(axis=1).astype(np.float32))
    # a model whose predict() is not its scores' argmax is asked twice, as before
    tree = DecisionTreeClassifier(random_state=0).fit(x, y)
    pred, confidence = c._predict_once(tree, x_test)
    assert confidence is None and np.array_equal(pred, tree.predict(x_test))


def test_the_depth_sweep_cuts_the_leaderboards_tree_instead_of_growing_one(mnist5k, params,
                                                                            tmp_path):
    tree = call_step(c.fit_model, mnist5k, params, name="decision-tree",
                     files_dir=tmp_path, files_key="0123456789abcdef0123",
                     depth_cuts_for_sweep=True)
    shared = call_step(c.tree_depth_sweep, mnist5k, params, tree=tree)
    split = c.make_split(mnist5k, params.max_train, params.validation_fraction, 0)
    grown = DecisionTreeClassifier(random_state=0).fit(split.x_fit, split.y_fit)
    assert shared.from_leaderboard and shared.fit_s == tree.row["fit_s"]
    assert shared.leaf_depth_max == grown.get_depth() == tree.depth_cuts["leaf_depth_max"]
    # the same numbers as the whole tree grown here, cut at the sweep's depths
    cuts = c.depth_cuts(grown, split, [min(d, grown.get_depth()) for d in params.tree_depths])
    assert (shared.train_acc, shared.val_acc, shared.test_acc) == (
        cuts["train"], cuts["val"], cuts["test"])
    assert params.tree_depths[-1] >= grown.get_depth()  # so the deepest cut is the whole tree
    assert shared.test_acc[-1] == pytest.approx(tree.row["test_acc"])
    own = call_step(c.tree_depth_sweep, mnist5k, params)
    assert not own.from_leaderboard and own.depths == shared.depths


@pytest.mark.parametrize("override, shared", [
    ({}, True), ({"models": ["logistic"]}, False),
    ({"model_params": {"decision-tree": {"max_depth": 5}}}, False)])
def test_the_depth_sweep_shares_only_a_default_leaderboard_tree(mnist5k, override, shared):
    params = build_config("quick", {"classic": override}).classic
    steps = {s.name: s for s in c.plan(mnist5k, params, 0)}
    assert (steps["tree_depth"].needs == {"tree": "model:decision-tree"}) is shared
    # the leaderboard's tree scores its cuts only for a sweep that reads them
    if "model:decision-tree" in steps:
        assert steps["model:decision-tree"].arguments.get("depth_cuts_for_sweep", False) is shared


LINEAR_SVM_ALONE = """
import sys, psutil
from pathlib import Path
from mnistlab import load_dataset
from mnistlab.sections import classic as c
from mnistlab.engine.step import call_step

result = call_step(c.fit_model, load_dataset("digits"), c.Params(**c.QUICK), name="linear-svm",
                   files_dir=Path(sys.argv[1]), files_key="0123456789abcdef0123")
print(result.row["test_acc"], len(psutil.Process().children(recursive=True)))
"""


def test_the_linear_svm_fits_its_one_vs_rest_problems_in_threads(tmp_path):
    """Not in joblib's worker processes, whose start-up took longer than the fit."""
    import subprocess
    import sys

    script = tmp_path / "fit.py"
    script.write_text(LINEAR_SVM_ALONE)
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "models")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    accuracy, children = done.stdout.split()
    assert float(accuracy) > 0.9 and children == "0"
