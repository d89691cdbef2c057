"""Report part "Is the data clean?" and its exports (``data_issues.csv``, ``data_issues.json``),
from the quality section's stored results."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
from pathlib import Path

from ..core.files import atomic_write_bytes
from ..sections.quality import KINDS, SPLITS, IssueTable, LabelIssues, LeakEffect, NeighbourIssues
from ..study.results import StudyContext
from .blocks import Block, FigureSink, heading, maybe, nouns, table, text
from .figures import image_grid
from .leaderboard import no_nan
from .noise import within_chance

COLUMNS = ["split", "index", "kind", "score", "given_label", "suggested_label", "other_split",
           "other_index", "other_label"]
SCORE_MEANING = {
    "duplicate": "0 (identical pixels)",
    "label-conflict": "0 (identical pixels)",
    "leak": "0 (identical pixels)",
    "near-duplicate": "RMS pixel difference to the other image (grey levels)",
    "near-leak": "RMS pixel difference to the training image (grey levels)",
    "label-issue": "checker's probability of the given label",
    "outlier": "distance to the class's k-th nearest image over the class median",
}


def _tables(results: dict) -> list[IssueTable]:
    return [t for t in (maybe(results, NeighbourIssues), maybe(results, LabelIssues))
            if t is not None]


def issue_rows(results: dict, class_names: list[str]) -> list[dict]:
    """Every issue as a row of ``data_issues.csv``, strongest suspects of each kind first."""
    rows = []
    for t in _tables(results):
        for i in range(len(t.index)):
            other = int(t.other_split[i])
            other_label = class_names[t.other_label[i]] if other >= 0 else ""
            rows.append({
                "split": SPLITS[t.split[i]], "index": int(t.index[i]), "kind": KINDS[t.kind[i]],
                "score": round(float(t.score[i]), 6),
                "given_label": class_names[t.given[i]],
                "suggested_label": class_names[t.suggested[i]] if t.suggested[i] >= 0 else "",
                "other_split": SPLITS[other] if other >= 0 else "",
                "other_index": int(t.other_index[i]) if other >= 0 else "",
                "other_label": other_label})
    return rows


def issues_csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _kinds_of(t: IssueTable) -> list[int]:
    """The kinds a table decides, found or not."""
    return [KINDS.index("label-issue")] if isinstance(t, LabelIssues) else [
        k for k in range(len(KINDS)) if KINDS[k] != "label-issue"]


def counts(results: dict) -> dict[str, dict[str, int]]:
    """kind -> split -> number of issues (every kind and split, zeros included)."""
    found = {kind: dict.fromkeys(SPLITS, 0) for kind in KINDS}
    for t in _tables(results):
        for kind, split in zip(t.kind, t.split):
            found[KINDS[kind]][SPLITS[split]] += 1
    return found


def issues_document(results: dict, class_names: list[str], dataset: str) -> dict:
    """``data_issues.json``: the rows, the counts and how each kind was decided."""
    n = maybe(results, NeighbourIssues)
    c = maybe(results, LabelIssues)
    method = {}
    if n is not None:
        method["neighbours"] = {
            "pca_components": n.n_components, "explained_variance": n.explained_variance,
            "nearest_rms_median": n.nearest_rms_median, "near_factor": n.near_factor,
            "near_threshold_rms": n.near_threshold, "outlier_neighbours": n.outlier_neighbours,
            "outlier_iqr": n.outlier_iqr}
    if c is not None:
        method["labels"] = {
            "checker": c.checker, "folds": c.folds, "oof_accuracy": c.oof_accuracy,
            "test_accuracy": c.test_accuracy, "n_leaked": c.n_leaked,
            "accuracy_without_leaked": no_nan(c.accuracy_without_leaked),
            "accuracy_on_leaked": no_nan(c.accuracy_on_leaked), "n_removed": c.n_removed,
            "accuracy_cleaned": c.accuracy_cleaned,
            "accuracy_random_removed": c.accuracy_random_removed,
            "cleaned_delta_se": no_nan(c.cleaned_delta_se),
            "random_delta_se": no_nan(c.random_delta_se)}
    return {"dataset": dataset, "counts": counts(results), "score_meaning": SCORE_MEANING,
            "method": method, "issues": issue_rows(results, class_names)}


def write_data_issues(folder: str | Path, results: dict, class_names: list[str], dataset: str,
                      effects: dict[str, LeakEffect] | None = None) -> tuple[Path, Path]:
    """``data_issues.csv`` and ``data_issues.json`` in ``folder``; the JSON also holds the
    study's models' accuracies without the leaked test images (``effects``), when given."""
    folder = Path(folder)
    document = issues_document(results, class_names, dataset)
    if effects:
        document["models_without_leaked"] = {
            name: {**{k: no_nan(v) for k, v in dataclasses.asdict(e).items()},
                   "inflation": no_nan(e.inflation)} for name, e in effects.items()}
    csv_path, json_path = folder / "data_issues.csv", folder / "data_issues.json"
    atomic_write_bytes(csv_path, issues_csv(document["issues"]).encode())
    atomic_write_bytes(json_path, json.dumps(document, indent=1).encode())
    return csv_path, json_path


def _gallery(t: IssueTable, kind: str, names: list[str]):
    """The kept suspects of ``kind``: each image with its caption, and the other image of a
    pair beside it."""
    code = KINDS.index(kind)
    picked = [p for p, row in enumerate(t.shown) if t.kind[row] == code]
    if not picked:
        return None
    images, titles = [], []
    pairs = kind not in ("label-issue", "outlier")
    for p in picked:
        row = t.shown[p]
        where = f"{SPLITS[t.split[row]]} #{t.index[row]}"
        if kind == "label-issue":
            titles.append(f"{where}\n{names[t.given[row]]} -> {names[t.suggested[row]]}\n"
                          f"p={t.score[row]:.2f}")
        elif kind == "outlier":
            titles.append(f"{where}\n{names[t.given[row]]}\nscore {t.score[row]:.1f}")
        else:
            titles.append(f"{where}\n{names[t.given[row]]}\nrms {t.score[row]:.1f}")
        images.append(t.shown_images[p])
        if pairs:
            other = f"{SPLITS[t.other_split[row]]} #{t.other_index[row]}"
            images.append(t.shown_others[p])
            titles.append(f"{other}\n(its pair)\n")
    return image_grid(images, titles, cols=min(len(images), 8 if pairs else 10),
                      title_lines=3, fontsize=6.5, tile_inches=1.25)


def _delta(value: float, base: float, se: float) -> str:
    """A change in accuracy with its noise, and a verdict only beyond twice the noise."""
    d = value - base
    if math.isnan(se):
        return f"{d:+.4f}"
    if se == 0 and d == 0:  # a paired bootstrap with no spread: no image changed its verdict
        return f"{d:+.4f} (each test image is right or wrong as before)"
    verdict = ("within twice its noise: no change measurable" if abs(d) <= 2 * se
               else "a gain beyond twice its noise" if d > 0 else "a loss beyond twice its noise")
    return f"{d:+.4f} (bootstrap standard error {se:.4f}; {verdict})"


def render(results: dict, sink: FigureSink, study: StudyContext) -> list[Block]:
    names = study.class_names
    n = maybe(results, NeighbourIssues)
    c = maybe(results, LabelIssues)
    found = counts(results)
    computed = {KINDS[k] for t in _tables(results) for k in _kinds_of(t)}
    rows = [[kind, found[kind]["train"], found[kind]["test"], SCORE_MEANING[kind]]
            for kind in KINDS if kind in computed]
    blocks = [table(["kind", "train", "test", "score"], rows,
                    "Suspect images per kind and split (data_issues.csv lists each)")]
    if n is not None:
        blocks += _neighbour_blocks(n, found, names, sink)
    if c is not None:
        blocks += _label_blocks(c, n, found, names, sink)
    return blocks


def _neighbour_blocks(n: NeighbourIssues, found: dict, names: list[str],
                      sink: FigureSink) -> list[Block]:
    blocks = [heading("Duplicates and leakage"), text(
        f"Exact duplicates are found by the images' bytes. Near duplicates: for each image, its "
        f"3 nearest images in a {n.n_components}-component PCA of the pixels (fitted on the "
        f"{n.n_train:,} training images, {100 * n.explained_variance:.1f} % of their variance), "
        f"then the root-mean-square (RMS) difference of their pixels decides. A training "
        f"image's nearest other training image is {n.nearest_rms_median:.1f} grey levels RMS "
        f"away (median); a pair closer than {n.near_factor:g} times that, "
        f"<b>{n.near_threshold:.1f}</b> grey levels, counts as a near duplicate.")]
    exact_train, exact_test = found["duplicate"]["train"], found["duplicate"]["test"]
    conflicts = found["label-conflict"]["train"] + found["label-conflict"]["test"]
    leaks, near_leaks = found["leak"]["test"], found["near-leak"]["test"]
    near_train, near_test = found["near-duplicate"]["train"], found["near-duplicate"]["test"]
    sentences = []
    if exact_train + exact_test + conflicts + leaks == 0:
        sentences.append("No image repeats another exactly, within or across the splits.")
    else:
        sentences.append(
            f"<b>{exact_train:,}</b> training and <b>{exact_test:,}</b> test images repeat an "
            f"earlier image of their split exactly with the same label; <b>{leaks:,}</b> test "
            f"images are in the training set exactly (leakage); <b>{conflicts:,}</b> images "
            f"repeat another exactly under another label (label conflicts).")
    sentences.append(
        f"Below the near threshold: {_count(near_train, 'pair')} of training images, "
        f"{_count(near_test, 'pair')} of test images, and {_count(near_leaks, 'test image')} "
        f"with a near copy in the training set.")
    blocks.append(text(" ".join(sentences)))
    for kind, caption in (("leak", "Test images found exactly in the training set (left) and "
                           "their training copy (right)"),
                          ("label-conflict", "Identical images with different labels"),
                          ("near-leak", "Test images closest to a training image, below the "
                           "near threshold, beside that training image"),
                          ("duplicate", "Exact duplicates within a split"),
                          ("near-duplicate", "Closest pairs within a split, below the near "
                           "threshold")):
        fig = _gallery(n, kind, names)
        if fig is not None:
            blocks.append(sink.block(f"quality-{kind}", fig, caption))
    outliers_train, outliers_test = found["outlier"]["train"], found["outlier"]["test"]
    blocks += [heading("Outliers"), text(
        f"An image's outlier score is its distance (same PCA space) to its "
        f"{_ordinal(n.outlier_neighbours)} nearest training image of its own class, divided by "
        f"the class's median of that distance; an image scoring above its class's third "
        f"quartile plus {n.outlier_iqr:g} interquartile ranges is an outlier (Tukey's far-out "
        f"rule): <b>{outliers_train:,}</b> training images "
        f"({_pct(outliers_train, n.n_train)}) and <b>{outliers_test:,}</b> test images "
        f"({_pct(outliers_test, n.n_test)}).")]
    fig = _gallery(n, "outlier", names)
    if fig is not None:
        blocks.append(sink.block("quality-outlier", fig,
                                 "The highest outlier scores, with the image's given class"))
    return blocks


def _count(n: int, noun: str) -> str:
    return f"<b>{n:,}</b> {noun}{'' if n == 1 else 's'}"


def _ordinal(k: int) -> str:
    return {1: "1st", 2: "2nd", 3: "3rd"}.get(k, f"{k}th")


def _pct(count: int, total: int) -> str:
    return f"{100 * count / total:.2f} %" if total else "-"


def _label_blocks(c: LabelIssues, n: NeighbourIssues | None, found: dict, names: list[str],
                  sink: FigureSink) -> list[Block]:
    checker = {"svc+mlp": "an RBF SVC (C=10, libsvm's probabilities) and an MLP (256 hidden "
               "units) averaging their probabilities",
               "knn": "10-nearest neighbours (distance-weighted votes)"}[c.checker]
    n_train = n.n_train if n is not None else None
    flagged_train, flagged_test = found["label-issue"]["train"], found["label-issue"]["test"]
    share = f" ({_pct(flagged_train, n_train)})" if n_train else ""
    blocks = [heading("Likely label errors"), text(
        "Confident learning (cleanlab) counts the label errors the predicted probabilities "
        "imply (its calibrated off-diagonal estimate) and flags that many images, those with "
        "the lowest probability of their given label. The probabilities come from a model "
        f"that never saw the image: for the training images, {c.folds}-fold cross-validation "
        f"of {checker} on {c.features}; for the test images, the same "
        "model fitted on the training set. Its out-of-fold accuracy is "
        f"<b>{c.oof_accuracy:.4f}</b> and its test accuracy <b>{c.test_accuracy:.4f}</b>. "
        f"It flags <b>{flagged_train:,}</b> training {nouns(flagged_train, 'label')}{share} "
        f"and <b>{flagged_test:,}</b> test {nouns(flagged_test, 'label')}: the images whose "
        "given label the checker finds least probable. "
        f"{100 * (1 - c.oof_accuracy):.1f} % of the checker's own out-of-fold predictions are "
        "wrong, so a flag may be the checker's error rather than the label's"
        + (f"; here it does no better than guessing one of the {len(names)} classes "
           f"({1 / len(names):.4f}, within twice the noise of {n_train:,} images), so its flags "
           "say nothing about the labels."
           if n_train and within_chance(c.oof_accuracy, 1 / len(names), n_train)
           else ": the gallery shows the strongest ones." if flagged_train + flagged_test else
           "; here its estimate is 0: no image is flagged."))]
    fig = _gallery(c, "label-issue", names)
    if fig is not None:
        blocks.append(sink.block("quality-label-issue", fig,
                                 "Flagged labels, most confident first: given -> suggested "
                                 "label, the checker's probability of the given one"))
    blocks += [heading("What cleaning changes"), text(_effect_sentences(c))]
    blocks.append(table(
        ["test accuracy of the checker", "value", "test images"],
        [["fitted on every training image, all test images", round(c.test_accuracy, 4),
          "all"],
         ["the same, without the leaked test images", _round(c.accuracy_without_leaked),
          f"all but {c.n_leaked:,}"],
         ["the same, on the leaked test images only", _round(c.accuracy_on_leaked),
          f"{c.n_leaked:,}"],
         [f"refitted without the {c.n_removed:,} flagged training images",
          round(c.accuracy_cleaned, 4), "all"],
         [f"refitted without {c.n_removed:,} random training images",
          round(c.accuracy_random_removed, 4), "all"]],
        "Accuracy with and without the suspect images"))
    return blocks


def _round(value: float):
    return "-" if math.isnan(value) else round(value, 4)


def _effect_sentences(c: LabelIssues) -> str:
    if c.n_leaked:
        leak = (f"The checker scores {c.accuracy_on_leaked:.4f} on the "
                f"{_count(c.n_leaked, 'test image')} with an exact or near copy in the "
                f"training set and {c.accuracy_without_leaked:.4f} without them (against "
                f"{c.test_accuracy:.4f} on all): the test accuracy without the leaked images is "
                "the one that measures new images. ")
    else:
        leak = ("No test image has an exact or near copy in the training set, so the test "
                "accuracy is measured on images the models never saw. ")
    if not c.n_removed:
        return leak + "No training label is flagged, so there is nothing to remove."
    return leak + (
        f"Refitted without the {c.n_removed:,} flagged training images, the checker's test "
        f"accuracy changes by {_delta(c.accuracy_cleaned, c.test_accuracy, c.cleaned_delta_se)}"
        f"; without {c.n_removed:,} training images drawn at random, by "
        f"{_delta(c.accuracy_random_removed, c.test_accuracy, c.random_delta_se)}.")



def model_leak_blocks(effects: dict[str, LeakEffect], labels: dict[str, str]) -> list[Block]:
    """The study's models (``effects`` by name, in the leaderboard's order) with and without
    the leaked test images; nothing when no test image leaked."""
    n_leaked = max((e.n_leaked for e in effects.values()), default=0)
    if not n_leaked:
        return []
    rows, raised, lowered, sizes = [], [], [], []
    for name, e in effects.items():
        beyond = not math.isnan(e.inflation_se) and abs(e.inflation) > 2 * e.inflation_se
        if beyond:
            (raised if e.inflation > 0 else lowered).append(labels.get(name, name))
            sizes.append(abs(e.inflation))
        se = "-" if math.isnan(e.inflation_se) else round(e.inflation_se, 4)
        rows.append([labels.get(name, name), round(e.accuracy, 4),
                     _round(e.accuracy_without_leaked), _round(e.accuracy_on_leaked),
                     f"{e.inflation:+.4f}", se])
    sentences = [
        f"The study's models, scored without the {_count(n_leaked, 'test image')} with an "
        "exact or near copy in the training set: the difference is what the leaked images "
        "add to each test accuracy, its noise a bootstrap over the test images."]
    if raised:
        sentences.append(f"They raise the test accuracy of {_names(raised)} beyond twice "
                         "its noise.")
    if lowered:
        sentences.append(f"They lower the test accuracy of {_names(lowered)} beyond twice "
                         "its noise (the copies' labels disagree or the models miss them).")
    if sizes:
        sentences.append(f"The largest of these differences is {max(sizes):.4f}: "
                         f"{_share(max(sizes))} of the test images.")
    if not raised and not lowered:
        sentences.append("For every model the difference is within twice its noise: the "
                         "leaked images do not change what the test accuracies measure.")
    elif len(raised) + len(lowered) < len(effects):
        sentences.append("For the other models the difference is within twice its noise.")
    return [heading("The study's models without the leaked test images"),
            text(" ".join(sentences)),
            table(["model", "test accuracy", f"without the {n_leaked:,} leaked",
                   f"on the {n_leaked:,} leaked", "difference", "its standard error"], rows,
                  "Test accuracy with and without the test images found in the training set "
                  "(leaderboard.csv: test_acc_unleaked)")]


def _share(accuracy: float) -> str:
    """An accuracy difference as the number of test images in a thousand (or a hundred)."""
    return (f"{1000 * accuracy:.1f} in a thousand" if accuracy < 0.01
            else f"{100 * accuracy:.1f} in a hundred")


def _names(labels: list[str]) -> str:
    return labels[0] if len(labels) == 1 else ", ".join(labels[:-1]) + " and " + labels[-1]
