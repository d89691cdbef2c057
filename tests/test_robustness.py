"""Beyond the test set: the corruptions, the typed and 8x8 digits, the robustness section's
plan across sections, its stored predictions against the saved models, and its sentences."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest

from mnistlab import load_dataset, load_model
from mnistlab.data.corrupt import CORRUPTIONS, corrupt, font_digits, small_digits, system_fonts
from mnistlab.data.datasets import Dataset
from mnistlab.engine.step import call_step
from mnistlab.sections import robustness
from mnistlab.sections.robustness import ModelRobustness, Variants
from mnistlab.study.config import build_config
from mnistlab.study.results import load_study
from mnistlab.study.runner import plan_study

FONTS = system_fonts()
needs_fonts = pytest.mark.skipif(not FONTS, reason="no font in /usr/share/fonts")


@pytest.fixture(scope="module")
def mnist_5k() -> Dataset:
    return load_dataset("mnist-5k")


def _centre_of_mass(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    rows, cols = np.indices(x.shape[1:])
    mass = x.sum((1, 2))
    return np.stack([(x * rows).sum((1, 2)) / mass, (x * cols).sum((1, 2)) / mass], 1)


def test_each_corruption_is_seeded_and_does_what_it_says(mnist_5k):
    x = mnist_5k.x_test[:200]
    out = {name: corrupt(name, x, 0) for name in CORRUPTIONS}
    for name, y in out.items():
        assert y.dtype == np.uint8 and y.shape == x.shape, name
        assert np.array_equal(y, corrupt(name, x, 0)), name  # the seed fixes it
        assert not np.array_equal(y, x), name
    assert not np.array_equal(out["gaussian-noise"], corrupt("gaussian-noise", x, 1))
    ink = (x > 127).sum((1, 2))
    assert ((out["thick"] > 127).sum((1, 2)) > ink).all()
    assert ((out["thin"] > 127).sum((1, 2)) < ink).all()
    assert out["contrast"].max() == round(0.3 * x.max())
    assert out["blur"].max((1, 2)).mean() < x.max((1, 2)).mean()
    moved = np.linalg.norm(_centre_of_mass(out["shift"]) - _centre_of_mass(x), axis=1)
    assert np.median(moved) == pytest.approx(4, abs=0.5)
    # shrinking about the centre: the ink's spread around its centre falls to about 0.6
    spread = np.sqrt((out["shrink"] > 60).sum((1, 2)) / (x > 60).sum((1, 2)))
    assert 0.5 < np.median(spread) < 0.7
    small = load_dataset("digits").x_test[:20]  # 8x8: lengths scaled, no error
    assert corrupt("elastic", small, 0).shape == small.shape


@needs_fonts
def test_typed_digits_are_ten_distinct_glyphs_per_font_and_stroke(tmp_path):
    broken = tmp_path / "broken.ttf"
    broken.write_bytes(b"not a font")
    fonts = (*FONTS[:3], (str(broken), 10))
    images, labels, font_index, strokes, used = font_digits(fonts, (28, 28))
    assert len(used) == 3 and len(images) == 3 * 3 * 10  # the broken file left out
    assert images.dtype == np.uint8 and images.shape[1:] == (28, 28)
    assert (np.bincount(labels) == 9).all()
    for f in range(3):
        for s in set(strokes.tolist()):
            ten = images[(font_index == f) & (strokes == s)]
            assert len(np.unique(ten.reshape(10, -1), axis=0)) == 10
    # a wider stroke adds ink to the same glyph
    thin, wide = images[(font_index == 0) & (strokes == 0)], images[(font_index == 0) & (strokes == 4)]
    assert (wide.astype(int).sum((1, 2)) > thin.astype(int).sum((1, 2))).all()
    assert font_digits((), (28, 28))[0].shape == (0, 28, 28)


def test_the_8x8_digits_are_prepared_as_a_users_image():
    images, labels = small_digits((28, 28))
    assert images.shape == (1797, 28, 28) and labels.shape == (1797,)
    # MNIST's preparation: the ink in a 20-pixel box, its centre of mass at (14, 14)
    assert np.abs(_centre_of_mass(images) - 14).max() < 1.0
    for image in images[:100]:
        rows, cols = np.nonzero(image > 25)
        assert max(rows.max() - rows.min(), cols.max() - cols.min()) + 1 <= 21


def test_variants_of_a_dataset_that_is_not_digits_have_no_writing(mnist_5k):
    data = Dataset("garments", mnist_5k.x_train[:300], mnist_5k.y_train[:300],
                   mnist_5k.x_test[:120], mnist_5k.y_test[:120], mnist_5k.class_names)
    v = call_step(robustness.variants, data, robustness.Params(images=100), 0, fonts=FONTS,
                  small_digits_wanted=True)
    assert len(v.test_index) == 100 and v.corrupted.shape == (len(CORRUPTIONS), 100, 28, 28)
    assert np.array_equal(v.clean, data.x_test[v.test_index])
    assert np.array_equal(v.labels, data.y_test[v.test_index])
    assert len(v.font_labels) == 0 and len(v.small_labels) == 0


def test_the_plan_scores_each_model_its_sections_train():
    data = load_dataset("digits")
    planned = plan_study(data, build_config("quick"))
    by_name = {f"{p.section}/{p.step.name}": p for p in planned}
    scores = [p for p in planned if p.step.name.startswith("score:")]
    trained = [p for p in planned if p.step.fn.__name__ in ("fit_model", "train_model")]
    assert len(scores) == len(trained) > 5
    for p in scores:
        model = p.step.needs["model"]
        assert p.needed_keys["model"] == by_name[model].key  # the trained model's own key
        assert p.needed_keys["variants"] == by_name["robustness/variants"].key
    # the networks trained otherwise: exactly their scoring steps change key
    other = plan_study(data, build_config("quick", overrides={"deep": {"max_train": 500}}))
    before = {p.step.name: p.key for p in scores}
    changed = {p.step.name for p in other
               if p.section == "robustness" and before.get(p.step.name, p.key) != p.key}
    assert changed == {p.step.name for p in scores if p.step.needs["model"].startswith("deep/")}
    # the section alone: nothing to score
    alone = plan_study(data, build_config("quick"), sections=["robustness"])
    assert [p.step.name for p in alone] == ["variants", "familiarity"]


def test_the_stored_predictions_are_the_saved_models_on_the_corrupted_images(quick_run,
                                                                           mnist_5k):
    study = load_study(quick_run, sections={"robustness"})
    results = study.results["robustness"]
    v = next(r for r in results.values() if isinstance(r, Variants))
    scored = {r.name: r for r in results.values() if isinstance(r, ModelRobustness)}
    board = json.loads((quick_run / "leaderboard.json").read_text())["models"]
    assert set(scored) == {row["model"] for row in board}
    assert np.array_equal(v.clean, mnist_5k.x_test[v.test_index])
    for name in ("knn", "cnn-seed"):
        model = load_model(quick_run, name)
        for c in ("blur", "rotate"):
            at = v.corruptions.index(c)
            x = corrupt(c, mnist_5k.x_test[v.test_index], study.context.seed)
            assert np.array_equal(x, v.corrupted[at])
            assert np.array_equal(model.predict(x), scored[name].corrupted_pred[at]), (name, c)
        assert np.array_equal(model.predict(v.clean), scored[name].clean_pred)
        if len(v.font_labels):
            assert np.array_equal(model.predict(v.font_images), scored[name].font_pred)


def test_the_report_and_the_leaderboard_state_the_stored_accuracies(quick_run):
    from mnistlab.report.robustness import accuracies, label

    results = load_study(quick_run, sections={"robustness"}).results["robustness"]
    v = next(r for r in results.values() if isinstance(r, Variants))
    scored = [r for r in results.values() if isinstance(r, ModelRobustness)]
    html = (quick_run / "report.html").read_text()
    part = html[html.index('<section id="robustness">'):]
    part = part[:part.index("</section>")]
    rows = list(csv.DictReader((quick_run / "leaderboard.csv").open()))
    by_model = {r["model"]: r for r in rows}
    for m in scored:
        a = accuracies(v, m)
        assert float(by_model[m.name]["corrupted_acc_mean"]) == pytest.approx(a["mean"])
        shown = re.search(rf"<tr><td>{re.escape(label(m))}</td><td>([\d.]+)</td>"
                          rf"<td>([\d.]+)</td>", part)
        assert shown, label(m)
        assert float(shown.group(1)) == pytest.approx(a["clean"], abs=6e-5)
        assert float(shown.group(2)) == pytest.approx(a["mean"], abs=6e-5)
    best = max(scored, key=lambda m: accuracies(v, m)["mean"])
    assert (f"<b>{label(best)}</b> holds up best" in part
            or f"<b>{label(best)}</b> and <b>" in part and "hold up best" in part)


def _scored(name, labels, corrupted_right, clean_right=None, collapse_to=None):
    """A model's stored predictions right where ``corrupted_right`` (corruptions x images) is."""
    wrong = (labels + 1) % 10
    pred = np.where(corrupted_right, labels, wrong).astype(np.int16)
    if collapse_to is not None:
        pred[0] = collapse_to
    clean = labels if clean_right is None else np.where(clean_right, labels, wrong)
    z = np.zeros(0, np.int16)
    return ModelRobustness(name, "deep", clean.astype(np.int16), pred, z, z, 0.1, "")


def _variants(labels, n_corruptions=2):
    n = len(labels)
    z = np.zeros(0, np.int64)
    return Variants(np.arange(n), labels, np.zeros((n, 4, 4), np.uint8),
                    ["blur", "shift"][:n_corruptions], ["b", "s"][:n_corruptions],
                    np.zeros((n_corruptions, n, 4, 4), np.uint8), np.zeros((0, 4, 4), np.uint8),
                    z, z, z, [], np.zeros((0, 4, 4), np.uint8), z)


def _said(v, scored) -> str:
    from mnistlab.report.blocks import FigureSink
    from mnistlab.report.robustness import render

    class Context:
        seed, class_names = 0, [str(k) for k in range(10)]

    class NoFigures(FigureSink):
        def __init__(self):
            pass

        def block(self, name, fig, caption):
            from mnistlab.report.blocks import Block

            return Block("figure", text=caption)

    blocks = render({f"r{i}": r for i, r in enumerate([v, *scored])}, NoFigures(), Context())
    return " ".join(str(b.html) for b in blocks if b.kind == "text")


def test_the_sentences_follow_the_numbers_and_their_noise():
    rng = np.random.default_rng(0)
    labels = np.arange(2000) % 10
    v = _variants(labels)
    strong = _scored("strong", labels, rng.random((2, 2000)) < 0.9,
                     clean_right=rng.random(2000) < 0.95)
    weak = _scored("weak", labels, rng.random((2, 2000)) < 0.6,
                   clean_right=rng.random(2000) < 0.7)
    close = _scored("close", labels, rng.random((2, 2000)) < 0.895)
    said = _said(v, [weak, strong])
    assert "<b>strong</b> holds up best" in said and "beyond twice the noise" in said
    said = _said(v, [close, strong])
    assert "within twice the noise" in said
    assert "hold up best" in said and "holds up best" not in said  # both named, neither first
    # random labels: every model at chance on the clean images, so no ranking at all
    guess = [_scored(f"guess{i}", labels, rng.random((2, 2000)) < 0.1,
                     clean_right=rng.random(2000) < 0.1) for i in range(3)]
    said = _said(v, guess)
    assert "No model reads the clean images better than answering the largest class" in said
    assert "best" not in said.split("No model")[1].replace("at best", "")
    assert "hurts most" not in said
    # one class for most blurred images: said, with its share
    collapsed = _scored("collapsed", labels, rng.random((2, 2000)) < 0.5, collapse_to=1)
    said = _said(v, [strong, collapsed])
    assert 'collapsed answers "1" for 100 % of the images under blur (the class of 10 % of them)' in said
    assert "collapsed" not in _said(v, [strong, weak]).split("Some models")[-1]
    assert "Some models answer one class" not in _said(v, [strong, weak])
    # a class that is most of the sample, answered for most images, has taken nothing over
    # (the report once said "every class is about 25 %" of a sample where one was 43 %)
    mostly_ones = np.where(np.arange(2000) < 1200, 1, labels)
    v_unbalanced = _variants(mostly_ones)
    honest = _scored("honest", mostly_ones, rng.random((2, 2000)) < 0.9)
    said = _said(v_unbalanced, [honest])
    assert "Some models answer one class" not in said
    ones = _scored("ones", mostly_ones, rng.random((2, 2000)) < 0.1, collapse_to=1)
    assert 'ones answers "1" for 100 % of the images under blur (the class of 64 % of them)' in _said(
        v_unbalanced, [honest, ones])
    # the most accurate clean is not the most robust: said only when true
    fragile = _scored("fragile", labels, rng.random((2, 2000)) < 0.3,
                      clean_right=np.ones(2000, bool))
    assert "is not the most robust" in _said(v, [strong, fragile])
    assert "is not the most robust" not in _said(v, [strong, weak])
    # the worst corruption, and another within the noise of it
    shaky = _scored("shaky", labels, np.stack([rng.random(2000) < 0.8, rng.random(2000) < 0.4]))
    said = _said(v, [shaky])
    assert "hurts most is <b>shift</b>" in said and "within twice the noise of it" not in said
    said = _said(v, [_scored("even", labels, rng.random((2, 2000)) < 0.6)])
    assert "within twice the noise of it" in said


def test_who_reads_other_writing_best_is_said_only_beyond_the_noise():
    import dataclasses

    rng = np.random.default_rng(1)
    labels = np.arange(1000) % 10
    v = dataclasses.replace(_variants(labels), font_labels=labels, small_labels=labels,
                            font_images=np.zeros((1000, 4, 4), np.uint8),
                            small_images=np.zeros((1000, 4, 4), np.uint8),
                            font_index=np.zeros(1000, np.int64),
                            font_strokes=np.zeros(1000, np.int64), font_names=["DejaVu Sans"])

    def reader(name, font_share, small_share):
        wrong = (labels + 1) % 10
        m = _scored(name, labels, np.ones((2, 1000), bool))
        m.font_pred = np.where(rng.random(1000) < font_share, labels, wrong).astype(np.int16)
        m.small_pred = np.where(rng.random(1000) < small_share, labels, wrong).astype(np.int16)
        return m

    said = _said(v, [reader("sharp", 0.9, 0.8), reader("blunt", 0.6, 0.8)])
    assert "<b>sharp</b> reads them best (0.89" in said and "ahead of blunt" in said
    # both read every clean test image right: neither is said to be more accurate alone
    assert "sharp (1.0000) (blunt, 1.0000, is within twice the noise of it)" in said
    # the 8x8 digits: a tie within the noise names both, and no single best
    assert said.count("read them best, within twice the noise of each other") == 1
    assert said.count("reads them best") == 1


def test_the_opening_says_whether_the_models_saw_the_whole_test_set_or_a_sample():
    import dataclasses

    labels = np.arange(200) % 10
    model = _scored("m", labels, np.ones((2, 200), bool))
    whole = _said(dataclasses.replace(_variants(labels), n_test=200), [model])
    assert "predicts all 200 test images under" in whole and "the sample's" not in whole
    sample = _said(dataclasses.replace(_variants(labels), n_test=10_000), [model])
    assert "200 test images (a stratified sample of the 10,000" in sample
    assert "not the whole test set's" in sample


def test_the_familiarity_flag_raises_about_its_quantile_of_clean_images_and_more_of_noise(
        mnist_5k):
    from mnistlab.sections.robustness import familiarity, familiarity_scores

    v = call_step(robustness.variants, mnist_5k, robustness.Params(images=1000), 0, fonts=(),
                  small_digits_wanted=False)
    f = call_step(familiarity, mnist_5k, robustness.Params(), 0, variants=v, fit_images=4000,
                  n_components=50, quantile=0.95)
    assert (f.test_scores > f.threshold).mean() == pytest.approx(0.05, abs=0.002)
    assert f.components.shape == (50, 784) and f.n_fit == 4000
    # the score is the RMS of what the PCA cannot rebuild, in grey levels
    centred = v.clean[:50].reshape(50, -1).astype(np.float64) - f.mean
    rebuilt = (centred @ f.components.T) @ f.components
    rms = np.sqrt(((centred - rebuilt) ** 2).mean(1))
    assert np.allclose(familiarity_scores(v.clean[:50], f), rms, rtol=1e-3, atol=1e-2)
    flagged = dict(zip(v.corruptions, f.corrupted_flagged))
    assert flagged["impulse-noise"] > 0.9 and flagged["gaussian-noise"] > 0.5
    assert flagged["thick"] > 2 * 0.05 and flagged["shift"] > 2 * 0.05
