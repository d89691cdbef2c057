"""Every trained model of a study as files: ``leaderboard.csv`` and ``leaderboard.json``.

A benchmark card in the sense of the field's model cards: each model's metrics, fit and predict
time, size, peak memory and full parameters, with the seed, the library versions and the
machine (CPU, cores, threads) the study ran on. Built from stored results only, so that
``mnistlab report DIR`` rewrites it without recomputing anything.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from ..core.files import atomic_write_bytes
from ..sections.quality import LeakEffect, NeighbourIssues, leak_effect, leaked_test_images
from ..sections.robustness import ModelRobustness, Variants
from ..study.catalog import ModelEntry, model_entries
from ..study.results import StudyResults
from .robustness import accuracies

COLUMNS = ["rank", "model", "section", "label", "test_acc", "test_acc_unleaked",
           "corrupted_acc_mean", "typed_digits_acc", "small_digits_acc", "val_acc",
           "train_acc", "n_train",
           "representation", "engine", "fit_s", "predict_s_per_10k", "file_mb", "peak_mb", "threads",
           "seed", "dataset", "fingerprint", "profile", "file", "params"]


def _file_mb(folder: Path, relative: str) -> float | None:
    path = folder / relative
    return round(path.stat().st_size / 2**20, 4) if path.is_file() else None


def leak_effects(study: StudyResults,
                 entries: dict[str, ModelEntry] | None = None) -> dict[str, LeakEffect]:
    """Each model's test accuracy with and without the test images the data check found in
    the training set (exactly or nearly), from its stored test predictions; empty when the
    study ran no data check. ``study`` is loaded with the sections classic, deep and quality.

    The report has no test labels, and needs none: the data check kept the leaked images'
    labels (so which of them a model got right), the test accuracy says how many it got right
    in all. Which of the other images are right does not matter to either accuracy nor to the
    bootstrap, which resamples (right, leaked) pairs: only their counts do."""
    found = [r for r in study.results.get("quality", {}).values()
             if isinstance(r, NeighbourIssues)]
    if not found:
        return {}
    index, labels = leaked_test_images(found[0])
    n_test, n_leaked = found[0].n_test, len(index)
    leaked = np.arange(n_test) < n_leaked
    effects = {}
    for name, entry in (entries or model_entries(study)).items():
        if entry.test_pred is None or len(entry.test_pred) != n_test:
            continue
        right_leaked = entry.test_pred[index] == labels
        right_others = round(entry.test_acc * n_test) - int(right_leaked.sum())
        if not 0 <= right_others <= n_test - n_leaked:  # predictions of another test set
            continue
        right = np.concatenate([right_leaked, np.arange(n_test - n_leaked) < right_others])
        effects[name] = leak_effect(right, leaked, study.context.config.quality.bootstrap,
                                    study.context.seed)
    return effects


def _robustness(study: StudyResults) -> dict[str, dict]:
    """Each model's accuracies beyond the test set (the robustness section), by name."""
    results = study.results.get("robustness", {}).values()
    variants = [r for r in results if isinstance(r, Variants)]
    if not variants:
        return {}
    found = {}
    for m in (r for r in results if isinstance(r, ModelRobustness)):
        a = accuracies(variants[0], m)
        found[m.name] = {"corrupted_acc_mean": a["mean"], "typed_digits_acc": a["fonts"],
                         "small_digits_acc": a["small"]}
    return found


def leaderboard_rows(folder: Path, study: StudyResults) -> list[dict]:
    """One row per trained model, in the catalog's order: highest validation accuracy first
    (the test set only scores). ``test_acc_unleaked``: without the test images found in the
    training set (when the study ran the data check)."""
    context = study.context
    common = {"seed": context.seed, "dataset": context.dataset,
              "fingerprint": context.fingerprint, "profile": context.profile}
    entries = model_entries(study)
    effects = leak_effects(study, entries)
    robust = _robustness(study)
    rows = []
    for rank, entry in enumerate(entries.values(), 1):
        effect = effects.get(entry.name)
        rows.append({"rank": rank, "model": entry.name, "section": entry.section,
                     "label": entry.label, "test_acc": entry.test_acc,
                     "test_acc_unleaked": effect.accuracy_without_leaked if effect else None,
                     **robust.get(entry.name, {}),
                     "val_acc": entry.val_acc, "train_acc": entry.train_acc,
                     "n_train": entry.n_train, "representation": entry.representation,
                     "engine": entry.engine,
                     "fit_s": entry.fit_s, "predict_s_per_10k": entry.predict_s_per_10k,
                     "file_mb": _file_mb(folder, entry.file), "peak_mb": entry.peak_mb,
                     "threads": entry.threads, "file": entry.file, "params": entry.params,
                     **common})
    return [{c: no_nan(row.get(c)) for c in COLUMNS} for row in rows]


def no_nan(value):
    """JSON has no NaN: a metric that was not measured (no validation split) is null."""
    return None if isinstance(value, float) and value != value else value


def write_leaderboard(folder: str | Path, study) -> tuple[Path, Path]:
    """``leaderboard.csv`` and ``leaderboard.json`` in ``folder``, from the loaded ``study``
    (sections classic and deep; quality for ``test_acc_unleaked``, robustness for the
    accuracies beyond the test set)."""
    folder = Path(folder)
    rows = leaderboard_rows(folder, study)
    context = study.context
    checked = [r for r in study.results.get("quality", {}).values()
               if isinstance(r, NeighbourIssues)]
    card = {"dataset": context.dataset, "fingerprint": context.fingerprint,
            "profile": context.profile, "seed": context.seed,
            "class_names": list(context.class_names),
            "image_shape": list(context.image_shape), "machine": context.machine or None,
            # test_acc_unleaked leaves these out (null: the study ran no data check)
            "n_test_leaked": len(leaked_test_images(checked[0])[0]) if checked else None,
            "models": rows}
    json_path, csv_path = folder / "leaderboard.json", folder / "leaderboard.csv"
    atomic_write_bytes(json_path, json.dumps(card, indent=2, default=str,
                                             allow_nan=False).encode())
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, "params": json.dumps(row["params"], sort_keys=True,
                                                     default=str)})
    atomic_write_bytes(csv_path, text.getvalue().encode())
    return csv_path, json_path

