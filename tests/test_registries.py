"""Each kind has one registry, and adding to it is one entry (docs/ARCHITECTURE.md)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mnistlab import build_config
from mnistlab.data.datasets import CATALOG, DIGIT_DATASETS, REMOTE
from mnistlab.models import persistence
from mnistlab.models.architectures import NETWORKS, image_shape_problem
from mnistlab.sections import SECTIONS, classic, deep

SRC = Path(__file__).resolve().parents[1] / "src"

# The diff docs/ARCHITECTURE.md shows for a new classic model.
EXTRA_TREES = '''

def _extra_trees(seed: int, break_ties: bool):
    from sklearn.ensemble import ExtraTreesClassifier

    return ExtraTreesClassifier(n_estimators=100, n_jobs=-1, random_state=seed)


MODELS["extra-trees"] = ModelInfo("extra trees", "discriminative", False, _extra_trees,
                                  trusted_types=(TREE,))
'''


def test_the_config_has_one_part_per_section_in_their_order():
    config = build_config("quick")
    assert list(type(config).model_fields) == ["seed", "engine", *(s.NAME for s in SECTIONS)]
    for section in SECTIONS:
        assert isinstance(getattr(config, section.NAME), section.Params)


def test_the_deep_sections_defaults_come_from_the_network_registry():
    assert list(deep.DEFAULT_MODELS) == list(NETWORKS)
    assert deep.TRAINING_ORDER == ["cnn-fast", "cnn-seed", "mlp-2", "mlp-1"]
    assert deep.DEFAULT_MODELS["cnn-fast"].epochs == NETWORKS["cnn-fast"].spec["epochs"]
    assert image_shape_problem("mlp-1", (28, 28), {"channels": [8]}) == \
        "mlp-1: unknown arch_params channels (it takes hidden, dropout)"
    assert "pool 8x8 images to nothing" in image_shape_problem("cnn-fast", (8, 8),
                                                               {"channels": [4, 4, 4, 4, 4]})


def test_the_dataset_catalog_says_which_are_digits_and_which_are_downloaded():
    assert DIGIT_DATASETS == ("mnist", "mnist-5k", "digits")
    assert set(REMOTE) == {info.name for info in CATALOG if info.remote is not None} == \
        {"mnist", "fashion-mnist", "kmnist"}


def test_our_trusted_types_name_the_classes_skops_records():
    from mnistlab.models.pipeline import ImageInputs
    from mnistlab.models.svc import SVC

    ours = {f"{c.__module__}.{c.__qualname__}" for c in (ImageInputs, SVC)}
    assert ours == set(persistence.OWN_TYPES) <= persistence.TRUSTED_TYPES
    # a model saved before the layered packages still names the old modules
    assert {"mnistlab.pipeline.ImageInputs", "mnistlab.svc.SVC"} <= persistence.TRUSTED_TYPES
    assert classic.TRUSTED_TYPES == {classic.TREE, classic.BOOSTING_TREE}


@pytest.mark.slow
def test_a_classic_model_added_by_one_registry_entry_is_fitted_saved_ranked_and_served(
        tmp_path):
    """The documented addition, applied to a copy of the package: nothing else changes."""
    package = tmp_path / "src" / "mnistlab"
    shutil.copytree(SRC / "mnistlab", package, ignore=shutil.ignore_patterns("__pycache__"))
    module = package / "sections" / "classic.py"
    source = module.read_text()
    at = source.index("ModelName = Literal[tuple(MODELS)]")
    module.write_text(source[:at] + EXTRA_TREES.lstrip("\n") + "\n" + source[at:])
    script = textwrap.dedent(f"""
        import json
        from mnistlab import build_config, load_dataset, load_model, run_study

        if __name__ == "__main__":
            data = load_dataset("digits")
            config = build_config("quick", {{"classic": {{"models": ["extra-trees", "logistic"],
                                            "tree_depths": [2], "svc_pca_components": [10],
                                            "kernels": ["rbf"], "tree_pca_components": [2],
                                            "learning_curve_sizes": [100]}}}})
            run_study(data, config, {str(tmp_path / "run")!r}, profile="quick",
                      sections=["classic"])
            from mnistlab.report.leaderboard import write_leaderboard
            from mnistlab.study.results import load_study
            write_leaderboard({str(tmp_path / "run")!r}, load_study({str(tmp_path / "run")!r}))
            model = load_model({str(tmp_path / "run")!r}, "extra-trees")
            accuracy = float((model.predict(data.x_test) == data.y_test).mean())
            rows = json.loads(open({str(tmp_path / "run" / "leaderboard.json")!r}).read())
            print(json.dumps({{"module": type(model.estimator[-1]).__module__,
                              "accuracy": accuracy, "label": model.label,
                              "ranked": [r["model"] for r in rows["models"]]}}))
        """)
    (tmp_path / "add.py").write_text(script)
    done = subprocess.run([sys.executable, str(tmp_path / "add.py")], capture_output=True,
                          text=True, env={"PYTHONPATH": str(tmp_path / "src"),
                                          "MNISTLAB_DATA": str(tmp_path / "cache"),
                                          "PATH": "/usr/bin:/bin"}, timeout=600)
    assert done.returncode == 0, done.stderr
    import json

    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["module"].startswith("sklearn.ensemble") and out["label"] == "extra trees"
    assert out["accuracy"] > 0.9  # 8x8 digits: a forest of 100 trees
    assert sorted(out["ranked"]) == ["extra-trees", "logistic"]
