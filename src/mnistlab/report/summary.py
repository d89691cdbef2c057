"""The summary of several studies (datasets x seeds): every model's test accuracy as mean and
standard deviation over the seeds, per dataset, beside links to each study's report. Built
from each run folder's leaderboard.json, recomputing nothing."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..core.files import atomic_write_bytes


def summarize(folders: list[Path]) -> dict:
    """Per dataset, per model: test accuracy mean and standard deviation over the studies."""
    by_dataset: dict[str, list[dict]] = {}
    for folder in folders:
        card = json.loads((folder / "leaderboard.json").read_text(encoding="utf-8"))
        by_dataset.setdefault(card["dataset"], []).append({**card, "folder": folder})
    datasets = []
    for name, cards in by_dataset.items():
        models: dict[str, list[dict]] = {}
        for card in cards:
            for row in card["models"]:
                models.setdefault(row["model"], []).append(row)
        rows = []
        for model, runs in models.items():
            acc = np.array([r["test_acc"] for r in runs], dtype=float)
            rows.append({"model": model, "n": len(runs), "test_acc": acc.tolist(),
                         "test_acc_mean": float(acc.mean()),
                         "test_acc_std": float(acc.std(ddof=1)) if len(acc) > 1 else 0.0,
                         "fit_s_mean": float(np.mean([r["fit_s"] for r in runs]))})
        rows.sort(key=lambda r: -r["test_acc_mean"])
        datasets.append({"dataset": name, "seeds": [c["seed"] for c in cards],
                         "studies": [{"seed": c["seed"], "folder": str(c["folder"])}
                                     for c in cards], "models": rows})
    return {"studies": [str(f) for f in folders], "datasets": datasets}


def write_summary(parent: Path, folders: list[Path]) -> Path:
    """``parent/summary.json`` and ``parent/summary.html``; returns the HTML's path."""
    from jinja2 import Environment, PackageLoader

    summary = summarize(folders)
    for d in summary["datasets"]:
        for s in d["studies"]:
            s["report"] = os.path.relpath(Path(s["folder"]) / "report.html", parent)
    atomic_write_bytes(parent / "summary.json", json.dumps(summary, indent=1).encode())
    env = Environment(loader=PackageLoader("mnistlab"), autoescape=True)
    html = env.get_template("summary.html.j2").render(**summary)
    atomic_write_bytes(parent / "summary.html", html.encode())
    return parent / "summary.html"
