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
import os
import platform
from pathlib import Path

from .store import atomic_write_bytes

COLUMNS = ["rank", "model", "section", "label", "test_acc", "val_acc", "train_acc", "n_train",
           "representation", "fit_s", "predict_s_per_10k", "file_mb", "peak_mb", "threads",
           "seed", "dataset", "fingerprint", "profile", "file", "params"]
LIBRARIES = ("numpy", "scipy", "scikit-learn", "torch", "skops", "umap-learn")


def machine_card() -> dict:
    """The machine and libraries of this process, recorded with each study."""
    from importlib.metadata import PackageNotFoundError, version

    from . import __version__

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f
                        if line.startswith("model name")), cpu)
    except OSError:
        pass
    libraries = {"mnistlab": __version__}
    for name in LIBRARIES:
        try:
            libraries[name] = version(name)
        except PackageNotFoundError:
            continue
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": cpu, "logical_cores": os.cpu_count(), "usable_cores": usable,
            "python": platform.python_version(), "platform": platform.platform(),
            "libraries": libraries}


def _file_mb(folder: Path, relative: str) -> float | None:
    path = folder / relative
    return round(path.stat().st_size / 2**20, 4) if path.is_file() else None


def leaderboard_rows(folder: Path, study) -> list[dict]:
    """One row per trained model, best test accuracy first."""
    from .saved import _deep_val_acc
    from .sections.classic import MODELS

    context = study.context
    common = {"seed": context.seed, "dataset": context.dataset,
              "fingerprint": context.fingerprint, "profile": context.profile}
    cores = context.machine.get("usable_cores")
    rows = []
    for step, r in study.results.get("classic", {}).items():
        if not step.startswith("model:"):
            continue
        row = r.row
        rows.append({"model": r.name, "section": "classic", "label": MODELS[r.name].label,
                     "test_acc": row["test_acc"], "val_acc": row["val_acc"],
                     "train_acc": row["train_acc"], "n_train": row["n_fit"],
                     "representation": r.representation, "fit_s": row["fit_s"],
                     "predict_s_per_10k": row["predict_s_per_10k"],
                     "file_mb": _file_mb(folder, getattr(r, "model_file", "") or ""),
                     "peak_mb": row["peak_mb"], "threads": cores,
                     "file": getattr(r, "model_file", None),
                     "params": getattr(r, "params", None) or {"repr": r.estimator}, **common})
    for step, r in study.results.get("deep", {}).items():
        if not step.startswith("train:"):
            continue
        train_acc = (r.history.get("train_acc") or [None])[-1]
        rows.append({"model": r.name, "section": "deep", "label": r.name,
                     "test_acc": r.test_acc, "val_acc": _deep_val_acc(r),
                     "train_acc": train_acc, "n_train": r.n_train,
                     "representation": "pixels (standardised)", "fit_s": r.train_s,
                     "predict_s_per_10k": r.infer_s_per_10k,
                     "file_mb": _file_mb(folder, r.weights_file), "peak_mb": r.peak_mb,
                     "threads": r.threads, "file": r.weights_file,
                     "params": {**r.spec, "n_params": r.n_params, "epochs_run": r.epochs_run},
                     **common})
    rows.sort(key=lambda row: -row["test_acc"])
    for rank, row in enumerate(rows, 1):
        row["rank"] = rank
    return [{c: _no_nan(row.get(c)) for c in COLUMNS} for row in rows]


def _no_nan(value):
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

