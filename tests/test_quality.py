"""The data check on a dataset with faults planted by the test: flipped labels, test images
copied into the training set, exact and slightly noised duplicates. And on clean data."""

from __future__ import annotations

import csv
import io
import json
import math

import numpy as np
import pytest

from conftest import run_cli
from mnistlab.data.datasets import Dataset, load_dataset
from mnistlab.engine.step import call_step
from mnistlab.report.quality import counts, issue_rows, issues_csv
from mnistlab.sections import quality
from mnistlab.sections.quality import KINDS

N_LEAKS, N_EXACT, N_NOISED = 20, 10, 10


@pytest.fixture(scope="module")
def mnist_5k() -> Dataset:
    return load_dataset("mnist-5k")


@pytest.fixture(scope="module")
def planted(mnist_5k):
    """mnist-5k with 2 % of its training labels flipped at random, N_LEAKS test images appended
    to the training set, N_EXACT training images appended again and N_NOISED appended with
    Gaussian noise (sd 8 grey levels). Returns the data and where each fault is."""
    d = mnist_5k
    rng = np.random.default_rng(7)
    n = len(d.y_train)
    flips = rng.choice(n, int(0.02 * n), replace=False)
    y_train = d.y_train.copy()
    y_train[flips] = (y_train[flips] + rng.integers(1, d.n_classes, len(flips))) % d.n_classes
    untouched = np.setdiff1d(np.arange(n), flips)
    sources = rng.choice(untouched, N_EXACT + N_NOISED, replace=False)
    exact, noised = sources[:N_EXACT], sources[N_EXACT:]
    leaks = rng.choice(len(d.y_test), N_LEAKS, replace=False)
    noisy = np.clip(d.x_train[noised] + rng.normal(0, 8, d.x_train[noised].shape), 0, 255)
    x_train = np.concatenate([d.x_train, d.x_test[leaks], d.x_train[exact],
                              noisy.round().astype(np.uint8)])
    y_train = np.concatenate([y_train, d.y_test[leaks], y_train[exact], y_train[noised]])
    data = Dataset("planted", x_train, y_train, d.x_test, d.y_test, d.class_names,
                   digits=True)
    copies = n + N_LEAKS + np.arange(N_EXACT + N_NOISED)
    return data, {"flips": flips, "leaks": leaks, "leak_copies": n + np.arange(N_LEAKS),
                  "exact": exact, "exact_copies": copies[:N_EXACT], "noised": noised,
                  "noised_copies": copies[N_EXACT:]}


@pytest.fixture(scope="module")
def planted_results(planted):
    data, _ = planted
    params = quality.Params()
    found = call_step(quality.neighbours, data, params, 0)
    return found, call_step(quality.labels, data, params, 0, neighbours=found)


def _rows(table, kind: str) -> list[tuple]:
    code = KINDS.index(kind)
    return [(int(s), int(i), int(os_), int(oi)) for s, i, k, os_, oi in zip(
        table.split, table.index, table.kind, table.other_split, table.other_index) if k == code]


def test_every_planted_leak_is_found_with_its_training_copy(planted, planted_results):
    _, where = planted
    found, _ = planted_results
    leaks = set(_rows(found, "leak"))
    expected = {(1, int(t), 0, int(c)) for t, c in zip(where["leaks"], where["leak_copies"])}
    assert expected <= leaks
    assert not leaks - expected  # mnist-5k has no leak of its own


def test_every_planted_duplicate_is_found(planted, planted_results):
    _, where = planted
    found, _ = planted_results
    assert set(_rows(found, "duplicate")) == {
        (0, int(c), 0, int(s)) for s, c in zip(where["exact"], where["exact_copies"])}
    near = {(i, o) for _, i, _, o in _rows(found, "near-duplicate")}
    for source, copy in zip(where["noised"], where["noised_copies"]):
        assert (int(copy), int(source)) in near
    # the threshold is derived from the data: a quarter of the median nearest distance
    assert found.near_threshold == pytest.approx(0.25 * found.nearest_rms_median)
    noised_rms = found.score[(found.kind == KINDS.index("near-duplicate"))
                             & np.isin(found.index, where["noised_copies"])]
    assert (noised_rms > 0).all() and (noised_rms < found.near_threshold).all()


def test_flipped_labels_are_found_with_precision_and_recall_above_80_percent(
        planted, planted_results):
    _, where = planted
    _, checked = planted_results
    assert checked.checker == "svc+mlp"
    flagged = checked.index[(checked.split == 0) & (checked.kind == KINDS.index("label-issue"))]
    hits = np.isin(flagged, where["flips"]).sum()
    precision, recall = hits / len(flagged), hits / len(where["flips"])
    print(f"planted flips: {len(flagged)} flagged, precision {precision:.3f}, recall {recall:.3f}")
    assert precision >= 0.8, (precision, recall)
    assert recall >= 0.8, (precision, recall)
    # the suggested label of a found flip is mostly its true one
    d = load_dataset("mnist-5k")
    found_flips = np.isin(checked.index, where["flips"]) & (checked.split == 0)
    restored = checked.suggested[found_flips] == d.y_train[checked.index[found_flips]]
    assert restored.mean() > 0.9


def test_what_cleaning_changes_is_measured_against_random_removal(planted_results):
    _, checked = planted_results
    assert checked.n_leaked >= N_LEAKS
    assert checked.accuracy_on_leaked == 1.0  # leaked images are in the training set
    assert checked.n_removed == int(((checked.split == 0)
                                     & (checked.kind == KINDS.index("label-issue"))).sum())
    for value in (checked.accuracy_cleaned, checked.accuracy_random_removed):
        assert 0.9 < value <= 1.0
    assert 0 < checked.cleaned_delta_se < 0.02


def test_clean_data_has_no_exact_duplicate_and_the_export_matches_the_counts(mnist_5k):
    params = quality.Params(checker="knn")
    found = call_step(quality.neighbours, mnist_5k, params, 0)
    checked = call_step(quality.labels, mnist_5k, params, 0, neighbours=found)
    results = {"neighbours": found, "labels": checked}
    found_counts = counts(results)
    for kind in ("duplicate", "leak", "label-conflict"):
        assert found_counts[kind] == {"train": 0, "test": 0}
    rows = list(csv.DictReader(io.StringIO(issues_csv(issue_rows(results, mnist_5k.class_names)))))
    for kind in KINDS:
        for split in ("train", "test"):
            assert sum(r["kind"] == kind and r["split"] == split for r in rows) == \
                found_counts[kind][split]


def test_same_pixels_with_another_label_is_a_label_conflict(mnist_5k):
    d = mnist_5k
    x_train = np.concatenate([d.x_train[:300], d.x_train[:2], d.x_test[:1]])
    y_train = np.concatenate([d.y_train[:300], d.y_train[:2], (d.y_test[:1] + 1) % 10])
    data = Dataset("conflicts", x_train, y_train, d.x_test[:50], d.y_test[:50], d.class_names)
    found = call_step(quality.neighbours, data, quality.Params(), 0)
    assert sorted(_rows(found, "duplicate")) == [(0, 300, 0, 0), (0, 301, 0, 1)]
    # the test image 0 and its training copy (index 302) carry different labels
    conflicts = _rows(found, "label-conflict")
    assert conflicts == [(1, 0, 0, 302)]
    row = found.kind == KINDS.index("label-conflict")
    assert found.suggested[row][0] == (d.y_test[0] + 1) % 10
    assert _rows(found, "leak") == []


@pytest.mark.cli
def test_data_check_command_writes_the_csv_and_json(tmp_path):
    out_csv, out_json = tmp_path / "issues.csv", tmp_path / "issues.json"
    result = run_cli("data", "check", "digits", "--csv", str(out_csv), "--json", str(out_json))
    assert result.returncode == 0, result.stderr
    assert "label-issue" in result.stderr and "near duplicate: closer than" in result.stderr
    rows = list(csv.DictReader(out_csv.open()))
    document = json.loads(out_json.read_text())
    assert len(rows) == len(document["issues"])
    assert sum(v["train"] + v["test"] for v in document["counts"].values()) == len(rows)
    assert not math.isnan(document["method"]["labels"]["oof_accuracy"])


@pytest.mark.cli
@pytest.mark.parametrize("args, message", [
    (["nope"], "error: --dataset nope: unknown dataset"),
    (["digits", "--csv", "/nonexistent-folder/x.csv"], "error: --csv /nonexistent-folder/x.csv: "
                                                       "no folder /nonexistent-folder"),
    (["digits", "--checker", "forest"], "error: --checker forest: use auto, svc+mlp or knn"),
])
def test_data_check_bad_input_is_one_line(args, message):
    result = run_cli("data", "check", *args)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith(message)


def test_a_change_in_accuracy_gets_a_verdict_only_beyond_twice_its_noise():
    from mnistlab.report.quality import _delta

    assert "no change measurable" in _delta(0.905, 0.900, 0.003)  # 0.005 <= 2 x 0.003
    assert "a gain beyond twice its noise" in _delta(0.910, 0.900, 0.003)
    assert "a loss beyond twice its noise" in _delta(0.890, 0.900, 0.003)
    assert _delta(0.91, 0.90, float("nan")) == "+0.0100"  # no noise measured: no verdict
    # mnist-5k, quick: "+0.0000 (bootstrap standard error 0.0000; within twice its noise...)"
    assert _delta(0.956, 0.956, 0.0) == "+0.0000 (each test image is right or wrong as before)"
    assert "a gain beyond twice its noise" in _delta(0.957, 0.956, 0.0)


def test_the_effect_sentences_follow_the_counts(planted_results):
    import dataclasses

    from mnistlab.report.quality import _effect_sentences

    _, checked = planted_results
    said = _effect_sentences(checked)
    assert f"on the <b>{checked.n_leaked:,}</b> test images with an exact or near" in said
    assert f"without the {checked.n_removed:,} flagged training images" in said
    nothing = dataclasses.replace(checked, n_leaked=0, n_removed=0,
                                  accuracy_on_leaked=float("nan"))
    said = _effect_sentences(nothing)
    assert "No test image has an exact or near copy" in said
    assert "nothing to remove" in said and "nan" not in said


def test_the_report_and_the_run_folders_csv_and_json_agree(quick_run):
    """The quick study's report counts what its data_issues.csv lists, and the JSON holds the
    same rows and the thresholds the report states."""
    import re

    rows = list(csv.DictReader((quick_run / "data_issues.csv").open()))
    document = json.loads((quick_run / "data_issues.json").read_text())
    assert [{k: str(v) for k, v in r.items()} for r in document["issues"]] == rows
    html = (quick_run / "report.html").read_text()
    part = html[html.index('<section id="quality">'):]
    part = part[:part.index("</section>")]
    table = part[part.index("Suspect images per kind"):part.index("</table>")]
    shown = {kind: (int(train), int(test)) for kind, train, test in re.findall(
        r"<tr><td>([a-z-]+)</td><td>([\d,]+)</td><td>([\d,]+)</td>", table.replace(",", ""))}
    assert set(shown) == set(KINDS)
    for kind, (train, test) in shown.items():
        assert train == sum(r["kind"] == kind and r["split"] == "train" for r in rows)
        assert test == sum(r["kind"] == kind and r["split"] == "test" for r in rows)
    threshold = document["method"]["neighbours"]["near_threshold_rms"]
    assert f"<b>{threshold:.1f}</b> grey levels" in part
    assert f"{document['method']['labels']['oof_accuracy']:.4f}" in part


def test_leak_effect_splits_the_accuracy_and_bootstraps_the_difference():
    from mnistlab.sections.quality import leak_effect

    rng = np.random.default_rng(0)
    leaked = np.zeros(2000, dtype=bool)
    leaked[:200] = True
    right = np.where(leaked, True, rng.random(2000) < 0.8)
    e = leak_effect(right, leaked, 1000, 0)
    assert e.n_leaked == 200 and e.accuracy_on_leaked == 1.0
    assert e.accuracy_without_leaked == pytest.approx(right[200:].mean())
    assert e.inflation == pytest.approx(right.mean() - right[200:].mean())
    # the difference is f * (1 - a), a the accuracy without and f the leaked share, both
    # resampled: sd(f) = sqrt(0.1 * 0.9 / 2000) = 0.0067, sd(a) = sqrt(0.8 * 0.2 / 1800) =
    # 0.0094, so sd = sqrt((0.2 * 0.0067)^2 + (0.1 * 0.0094)^2) = 0.0016 (to first order)
    assert 0.0013 < e.inflation_se < 0.0020
    none = leak_effect(right, np.zeros(2000, dtype=bool), 1000, 0)
    assert none.n_leaked == 0 and none.inflation == 0 and math.isnan(none.inflation_se)
    assert math.isnan(none.accuracy_on_leaked)


def test_the_leaderboards_accuracy_without_leaks_is_each_models_own(quick_run, planted_results,
                                                                     mnist_5k):
    """The leaderboard counts without the test labels: on the planted data check's 20+ leaked
    test images (the quick study's test set is the same), its accuracies equal those computed
    from every model's predictions and the labels."""
    import dataclasses

    from mnistlab.report.leaderboard import leak_effects
    from mnistlab.sections.quality import leaked_test_images
    from mnistlab.study.catalog import model_entries
    from mnistlab.study.results import load_study

    study = load_study(quick_run, sections={"classic", "deep", "quality"})
    found, _ = planted_results
    planted_study = dataclasses.replace(study, results={**study.results, "quality": {
        "neighbours": found}})
    entries = model_entries(planted_study)
    effects = leak_effects(planted_study, entries)
    assert set(effects) == set(entries) and {"classic", "deep"} <= {
        e.section for e in entries.values()}
    index, labels = leaked_test_images(found)
    assert len(index) >= N_LEAKS and (labels == mnist_5k.y_test[index]).all()
    leaked = np.isin(np.arange(len(mnist_5k.y_test)), index)
    for name, entry in entries.items():
        right = entry.test_pred == mnist_5k.y_test
        e = effects[name]
        assert e.accuracy == pytest.approx(right.mean())
        assert e.accuracy_without_leaked == pytest.approx(right[~leaked].mean())
        assert e.accuracy_on_leaked == pytest.approx(right[leaked].mean())
        assert e.inflation_se > 0


def test_the_report_says_what_leaks_do_to_the_studys_models():
    from mnistlab.report.quality import model_leak_blocks
    from mnistlab.sections.quality import LeakEffect

    labels = {"a": "Model A", "b": "Model B"}
    raised = LeakEffect(30, 0.95, 0.94, 1.0, 0.002)
    within = LeakEffect(30, 0.95, 0.948, 1.0, 0.002)
    said = " ".join(b.html for b in model_leak_blocks({"a": raised, "b": within}, labels)
                    if b.kind == "text")
    assert "raise the test accuracy of Model A beyond twice" in said
    assert "For the other models the difference is within twice its noise" in said
    assert "The largest of these differences is 0.0100: 1.0 in a hundred" in said
    said = " ".join(b.html for b in model_leak_blocks({"a": within}, labels) if b.kind == "text")
    assert "raise" not in said and "within twice its noise" in said
    assert model_leak_blocks({"a": LeakEffect(0, 0.9, 0.9, float("nan"), float("nan"))},
                             labels) == []


def test_the_quick_studys_leaderboard_and_report_carry_the_accuracy_without_leaks(quick_run):
    board = json.loads((quick_run / "leaderboard.json").read_text())
    document = json.loads((quick_run / "data_issues.json").read_text())
    n_leaked = board["n_test_leaked"]
    assert n_leaked == sum(r["kind"] in ("leak", "near-leak", "label-conflict")
                           and r["split"] == "test" and r["other_split"] == "train"
                           for r in document["issues"])
    rows = list(csv.DictReader((quick_run / "leaderboard.csv").open()))
    assert all(r["test_acc_unleaked"] for r in rows)
    html = (quick_run / "report.html").read_text()
    if n_leaked:
        assert set(document["models_without_leaked"]) == {r["model"] for r in rows}
        assert f"without the {n_leaked:,} leaked" in html
    else:
        assert all(float(r["test_acc_unleaked"]) == float(r["test_acc"]) for r in rows)
        assert "without the leaked test images" not in html
