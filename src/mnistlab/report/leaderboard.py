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

from ..core.files import atomic_write_bytes
from ..study.catalog import model_entries
from ..study.results import StudyResults

COLUMNS = ["rank", "model", "section", "label", "test_acc", "val_acc", "train_acc", "n_train",
           "representation", "engine", "fit_s", "predict_s_per_10k", "file_mb", "peak_mb", "threads",
           "seed", "dataset", "fingerprint", "profile", "file", "params"]


def _file_mb(folder: Path, relative: str) -> float | None:
    path = folder / relative
    return round(path.stat().st_size / 2**20, 4) if path.is_file() else None


def leaderboard_rows(folder: Path, study: StudyResults) -> list[dict]:
    """One row per trained model, in the catalog's order: highest validation accuracy first
    (the test set only scores)."""
    context = study.context
    common = {"seed": context.seed, "dataset": context.dataset,
              "fingerprint": context.fingerprint, "profile": context.profile}
    rows = []
    for rank, entry in enumerate(model_entries(study).values(), 1):
        rows.append({"rank": rank, "model": entry.name, "section": entry.section,
                     "label": entry.label, "test_acc": entry.test_acc,
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
    """``leaderboard.csv`` and ``leaderboard.json`` in ``folder``, from the loaded ``study``."""
    folder = Path(folder)
    rows = leaderboard_rows(folder, study)
    context = study.context
    card = {"dataset": context.dataset, "fingerprint": context.fingerprint,
            "profile": context.profile, "seed": context.seed,
            "class_names": list(context.class_names),
            "image_shape": list(context.image_shape), "machine": context.machine or None,
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

