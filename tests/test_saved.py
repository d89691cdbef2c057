"""Every trained model is saved without pickle, loads back, and predicts what the report says."""

import csv
import io
import json
import logging
import math
import shutil
import sqlite3

import numpy as np
import pytest

from conftest import run_cli
from mnistlab import load_dataset, load_model, load_study, open_models
from mnistlab.core.errors import ModelLoadError
from mnistlab.models.persistence import load_pipeline

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def test_set_npz(tmp_path_factory):
    data = load_dataset("mnist-5k")
    path = tmp_path_factory.mktemp("batch") / "test.npz"
    np.savez(path, x_test=data.x_test, y_test=data.y_test)
    return path


def test_predict_over_the_test_set_reproduces_every_models_test_accuracy(quick_run,
                                                                         test_set_npz):
    board = json.loads((quick_run / "leaderboard.json").read_text())
    expected = {row["model"]: row["test_acc"] for row in board["models"]}
    assert len(expected) == 13  # 9 classic models and 4 networks
    result = run_cli("predict", str(quick_run), str(test_set_npz), "--csv")
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == 1000 * 13
    for name, accuracy in expected.items():
        mine = [r for r in rows if r["model"] == name]
        measured = np.mean([r["class"] == r["label"] for r in mine])
        assert measured == accuracy, name  # exactly: the same arithmetic as the study's


def test_load_model_takes_raw_images_and_best_is_chosen_by_validation(quick_run):
    data = load_dataset("mnist-5k")
    board = json.loads((quick_run / "leaderboard.json").read_text())["models"]
    best = load_model(quick_run, "best")
    assert best.val_acc == max(r["val_acc"] for r in board if r["val_acc"] is not None)
    one = best.predict(data.x_test[0])
    assert one.shape == (1,) and best.predict(data.x_test[:5]).shape == (5,)
    logistic = load_model(quick_run, "logistic")
    proba = logistic.predict_proba(data.x_test[:50])
    assert proba.shape == (50, 10) and np.allclose(proba.sum(axis=1), 1)
    svm = load_model(quick_run, "linear-svm")
    assert not svm.has_proba and svm.scores(data.x_test[:3])[0] == "score"
    with pytest.raises(ValueError, match=r"expected images of shape \(n, 28, 28\)"):
        logistic.predict(np.zeros((2, 8, 8), np.uint8))
    with pytest.raises(ModelLoadError, match="no model 'resnet'.*best, all"):
        load_model(quick_run, "resnet")


def test_a_saved_model_altered_missing_or_holding_untrusted_types_is_refused(quick_run,
                                                                             tmp_path):
    run = tmp_path / "run"
    shutil.copytree(quick_run, run)
    (saved,) = (run / "models").glob("logistic-*.skops")
    saved.write_bytes(saved.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ModelLoadError, match="altered since the study saved it"):
        load_model(run, "logistic")
    saved.unlink()
    with pytest.raises(ModelLoadError, match="missing; rerun the study"):
        load_model(run, "logistic")
    import skops.io as sio
    from sklearn.preprocessing import FunctionTransformer

    hostile = tmp_path / "hostile.skops"
    sio.dump(FunctionTransformer(func=eval), hostile)
    with pytest.raises(ModelLoadError, match="types mnistlab does not trust: builtins.eval"):
        load_pipeline(hostile)
    (tmp_path / "junk.skops").write_bytes(b"not a zip")
    with pytest.raises(ModelLoadError, match="not a readable skops model"):
        load_pipeline(tmp_path / "junk.skops")


def test_another_scikit_learn_version_is_one_warning(quick_run, caplog):
    (saved,) = quick_run.glob("models/gaussian-nb-*.skops")
    with caplog.at_level(logging.WARNING, logger="mnistlab"):
        load_pipeline(saved, {"scikit-learn": "0.0.1"})
    (record,) = caplog.records
    assert "saved with scikit-learn 0.0.1 and is loaded with" in record.getMessage()


def test_the_leaderboard_is_a_benchmark_card_and_report_rewrites_it(quick_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(quick_run, run)
    card = json.loads((run / "leaderboard.json").read_text())
    assert card["machine"]["usable_cores"] >= 1 and "scikit-learn" in card["machine"]["libraries"]
    rows = card["models"]
    assert [r["rank"] for r in rows] == list(range(1, 14))
    # ranked by validation accuracy, as `best` chooses: the test set only scores
    assert [r["val_acc"] for r in rows] == sorted((r["val_acc"] for r in rows), reverse=True)
    assert rows[0]["model"] == load_model(run, "best").name
    assert rows[0]["val_acc"] == max(r["val_acc"] for r in rows)
    with sqlite3.connect(run / "study.sqlite") as db:
        stored = json.loads(db.execute("SELECT metrics FROM steps WHERE name='model:svc-rbf'"
                                       ).fetchone()[0])
    svc = next(r for r in rows if r["model"] == "svc-rbf")
    assert svc["test_acc"] == stored["row"]["test_acc"] and svc["params"]["C"] == 10.0
    assert svc["file_mb"] > 0 and svc["seed"] == 0 and svc["fit_s"] > 0
    cnn = next(r for r in rows if r["model"] == "cnn-fast")
    assert cnn["params"]["n_params"] > 0 and cnn["threads"] >= 1
    trained = load_study(run, sections={"deep"}).results["deep"]["train:cnn-fast"]
    held_out = math.ceil(cnn["params"]["validation_fraction"] * trained.n_train)
    assert cnn["n_train"] == trained.n_train - held_out > 0  # the images it was fitted on
    (run / "leaderboard.csv").unlink()
    (run / "leaderboard.json").write_text("stale")
    assert run_cli("report", str(run)).returncode == 0
    assert json.loads((run / "leaderboard.json").read_text()) == card
    with open(run / "leaderboard.csv") as f:
        table = list(csv.DictReader(f))
    assert [r["model"] for r in table] == [r["model"] for r in rows]


@pytest.mark.parametrize("args, message", [
    (["nowhere.png"], "nowhere.png: no such file or folder"),
    (["{bad}"], "not a readable image"),
    (["{png}", "--model", "resnet"], "no model 'resnet'"),
    (["{png}", "--json", "--csv"], "--json and --csv: choose one"),
])
def test_predict_mistakes_are_one_line(quick_run, tmp_path, args, message):
    from PIL import Image

    (tmp_path / "bad.png").write_bytes(b"\x89PNG but not really")
    Image.fromarray(load_dataset("mnist-5k").x_test[0]).save(tmp_path / "ok.png")
    args = [a.format(bad=tmp_path / "bad.png", png=tmp_path / "ok.png") for a in args]
    result = run_cli("predict", str(quick_run), *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.stderr


def test_predict_reads_the_images_before_it_loads_any_model(quick_run, tmp_path):
    """A mistake in the images is told at once: with a model file gone, the missing image is
    what the one line names (loading every model first took 9 s before saying it)."""
    run = tmp_path / "run"
    shutil.copytree(quick_run, run)
    (saved,) = (run / "models").glob("logistic-*.skops")
    saved.unlink()
    result = run_cli("predict", str(run), str(tmp_path / "nowhere.png"))
    assert result.returncode == 2 and "nowhere.png: no such file or folder" in result.stderr
    (image,) = load_dataset("mnist-5k").x_test[:1]
    from PIL import Image

    Image.fromarray(image).save(tmp_path / "ok.png")
    result = run_cli("predict", str(run), str(tmp_path / "ok.png"))
    assert result.returncode == 2 and "missing; rerun the study" in result.stderr


def test_predict_prints_each_models_class_and_json_has_the_probabilities(quick_run, tmp_path):
    from PIL import Image

    data = load_dataset("mnist-5k")
    Image.fromarray(data.x_test[3]).save(tmp_path / "three.png")
    result = run_cli("predict", str(quick_run), str(tmp_path / "three.png"), "--json",
                     "-m", "best", "-m", "logistic")
    assert result.returncode == 0, result.stderr
    (item,) = json.loads(result.stdout)
    logistic = item["predictions"]["logistic"]
    model = open_models(quick_run, ["logistic"])[0]
    assert logistic["probabilities"] == pytest.approx(
        model.predict_proba(data.x_test[3:4])[0].tolist(), abs=1e-6)
    assert logistic["class"] == int(np.argmax(logistic["probabilities"]))
    table = run_cli("predict", str(quick_run), str(tmp_path / "three.png"))
    assert table.returncode == 0 and "cnn-fast" in table.stdout and "svc-rbf" in table.stdout


def test_predict_says_which_images_are_far_from_the_training_images(quick_run, tmp_path):
    """The flag the page and the API show, in the command's JSON, CSV and table."""
    from PIL import Image

    from mnistlab.sections.robustness import familiarity_scores
    from mnistlab.study.catalog import familiarity_reference

    data = load_dataset("mnist-5k")
    Image.fromarray(data.x_test[3]).save(tmp_path / "three.png")
    noise = np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "noise.png")
    files = [str(tmp_path / "three.png"), str(tmp_path / "noise.png")]
    reference = familiarity_reference(quick_run)
    expected = familiarity_scores(np.stack([data.x_test[3], noise]), reference)
    result = run_cli("predict", str(quick_run), *files, "--json", "-m", "best")
    assert result.returncode == 0, result.stderr
    three, far = json.loads(result.stdout)
    assert three["familiarity"]["distance"] == pytest.approx(expected[0], abs=1e-3)
    assert three["familiarity"]["far"] is False and far["familiarity"]["far"] is True
    assert far["familiarity"]["threshold"] == pytest.approx(reference.threshold, abs=1e-3)
    rows = list(csv.DictReader(io.StringIO(run_cli("predict", str(quick_run), *files, "--csv",
                                                   "-m", "best").stdout)))
    assert [r["far"] for r in rows] == ["0", "1"]
    table = run_cli("predict", str(quick_run), *files, "-m", "best").stdout
    assert "noise.png is far from the training images" in table
    assert "three.png is far" not in table
