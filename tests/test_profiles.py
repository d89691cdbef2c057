"""Each profile's values reach the computations: read back from what the steps stored, on a
real quick run (mnist-5k) and a real full run (digits)."""

import pytest

from mnistlab import build_config, load_dataset, load_study
from mnistlab.sections import SECTIONS, classic, deep, explore, unsupervised


def _leaves(overrides: dict, prefix=()):
    for key, value in overrides.items():
        if isinstance(value, dict):
            yield from _leaves(value, (*prefix, key))
        else:
            yield (*prefix, key), value


def _get(model, path):
    for part in path:
        model = model[part] if isinstance(model, dict) else getattr(model, part)
    return model


@pytest.mark.parametrize("section", SECTIONS, ids=lambda s: s.NAME)
def test_every_quick_override_is_in_the_quick_config_and_not_the_full_one(section):
    full, quick = build_config("full"), build_config("quick")
    leaves = list(_leaves(section.QUICK))
    assert leaves
    for path, value in leaves:
        assert _get(getattr(quick, section.NAME), path) == value, path
        assert _get(getattr(full, section.NAME), path) != value, path  # a real override


def test_the_quick_profile_reaches_every_step(quick_run):
    study = load_study(quick_run)
    assert study.context.profile == "quick" and study.context.config == build_config("quick")
    r = study.results
    assert r["explore"]["holdout"].n_fit == explore.QUICK["holdout_train"]
    assert r["explore"]["holdout"].n_eval == explore.QUICK["holdout_eval"]
    assert r["unsupervised"]["pca"].n_train == unsupervised.QUICK["max_train"]
    assert [row["k"] for row in r["unsupervised"]["kmeans_sweep"].rows] == \
        unsupervised.QUICK["kmeans_k"]
    assert r["unsupervised"]["bic"].ks == unsupervised.QUICK["bic_k"]
    assert r["unsupervised"]["bic"].n_samples == unsupervised.QUICK["bic_sample"]
    assert len(r["unsupervised"]["gmm"].points) == unsupervised.QUICK["plot_points"]
    c = r["classic"]
    val = build_config("quick").classic.validation_fraction
    n_fit = round(classic.QUICK["max_train"] * (1 - val))
    assert abs(c["tree_depth"].n_fit - n_fit) <= 1
    assert c["tree_depth"].depths == classic.QUICK["tree_depths"]
    assert [row["n_components"] for row in c["svc_pca"].rows] == classic.QUICK["svc_pca_components"]
    assert c["svc_pca"].n_train == classic.QUICK["svc_sweep_max_train"]
    assert [row["n_components"] for row in c["tree_pca"].rows] == \
        classic.QUICK["tree_pca_components"]
    assert c["learning_curve"].sizes[:-1] == classic.QUICK["learning_curve_sizes"]
    assert c["model:logistic"].row["train_score_n"] == classic.QUICK["train_score_sample"]
    assert len(c["c_sweep"].labels) <= classic.QUICK["c_max_train"]
    assert c["model:hist-gb"].params["max_bins"] == classic.QUICK["boosting_max_bins"]
    assert r["deep"]["train:cnn-fast"].spec["augment_shift"] == 0  # not "auto": too few steps
    for name, spec in deep.QUICK["models"].items():
        run = r["deep"][f"train:{name}"]
        assert run.n_train == deep.QUICK["max_train"]
        assert run.spec["epochs"] == spec["epochs"] and run.epochs_run <= spec["epochs"]
        assert not run.isolated
    for demo in (v for k, v in r["deep"].items() if k.startswith("overfit:")):
        assert demo.epochs <= deep.QUICK["overfit_max_epochs"]


def test_the_full_profile_uses_all_the_data_and_every_default(full_digits_run):
    study = load_study(full_digits_run)
    full = build_config("full", engine="sklearn")  # the fixture asks for scikit-learn
    assert study.context.profile == "full" and study.context.config == full
    r = study.results
    n_train = 1437  # scikit-learn's digits, 80 % of 1,797
    assert r["explore"]["holdout"].n_fit == min(n_train, full.explore.holdout_train)
    assert r["unsupervised"]["pca"].n_train == n_train
    assert [row["k"] for row in r["unsupervised"]["kmeans_sweep"].rows] == \
        full.unsupervised.kmeans_k
    assert r["unsupervised"]["bic"].ks == full.unsupervised.bic_k
    c = r["classic"]
    assert c["tree_depth"].depths == full.classic.tree_depths
    assert c["learning_curve"].sizes[-1] == c["tree_depth"].n_fit
    assert abs(c["tree_depth"].n_fit - n_train * (1 - full.classic.validation_fraction)) <= 1
    for name, spec in full.deep.enabled().items():
        run = r["deep"][f"train:{name}"]
        decided = spec.for_data(load_dataset("digits"), name)  # "auto" epochs, for 8x8 digits
        assert run.n_train == n_train and run.spec["epochs"] == decided.epochs
        assert run.isolated  # the full profile trains each network in its own process
    assert r["deep"]["train:cnn-fast"].spec["augment_shift"] == 0  # "auto", on 8x8 digits


def test_the_full_profiles_networks_train_two_at_a_time_on_one_thread_each(full_digits_run):
    """A second thread made them little faster (cnn-seed 1.33x, mlp-2 none): on 2 cores two
    trainings, each on one thread, longest first; listed in the seed's order all the same."""
    from mnistlab.core.machine import usable_cores
    from mnistlab.study.catalog import model_entries

    study = load_study(full_digits_run)
    trained = {k: v for k, v in study.results["deep"].items() if k.startswith("train:")}
    rows = {r["name"]: r for r in study.cost if r["section"] == "deep"}
    assert [n for n in rows if n.startswith("train:")] == \
        [f"train:{n}" for n in deep.TRAINING_ORDER]  # computed longest first
    if usable_cores() == 2:  # the machine this was measured on (one core: one at a time)
        assert {run.threads for run in trained.values()} == {1}
        trainings = [n for n in rows if n.startswith("train:")]
        paired = [n for n in trainings
                  if any(other.startswith("train:") for other in rows[n]["beside"])]
        # two trainings at once, unless the embedding's own process held the other core all
        # along (a busy machine: the CI clone's run beside another test run once had it so)
        held = all("embedding" in rows[n]["beside"] for n in trainings)
        assert len(paired) >= 2 or held, {n: rows[n]["beside"] for n in trainings}
        # cnn-fast, first, has a training beside it unless the embedding's own process still
        # held the other core when it started (then they take turns until that one ends)
        beside_first = rows["train:cnn-fast"]["beside"]
        assert any(o.startswith("train:") for o in beside_first) or "embedding" in beside_first
    entries = [e for e in model_entries(study).values() if e.section == "deep"]
    assert {e.name for e in entries} == set(deep.DEFAULT_MODELS)
    # ranked by validation accuracy; a tie is broken in the seed's order
    assert entries == sorted(entries, key=lambda e: (-e.val_acc,
                                                     list(deep.DEFAULT_MODELS).index(e.name)))
