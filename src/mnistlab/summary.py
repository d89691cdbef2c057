"""The summary of several studies (datasets x seeds): every model's test accuracy as mean and
standard deviation over the seeds, per dataset, beside links to each study's report. Built
from each run folder's leaderboard.json, recomputing nothing."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .store import atomic_write_bytes

TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>mnistlab summary</title>
<style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:auto;padding:1rem}
table{border-collapse:collapse}td,th{padding:.2rem .6rem;border-bottom:1px solid #ddd;
text-align:right}td:first-child,th:first-child{text-align:left}</style></head><body>
<h1>mnistlab: {{ studies|length }} studies</h1>
<p>Test accuracy as mean &plusmn; standard deviation over the seeds (sample standard deviation,
n - 1; 0 with one seed), and the mean fit time.</p>
{% for d in datasets %}
<h2>{{ d.dataset }} (seeds {{ d.seeds|join(", ") }})</h2>
<p>Reports: {% for s in d.studies %}<a href="{{ s.report }}">seed {{ s.seed }}</a>
{%- if not loop.last %}, {% endif %}{% endfor %}</p>
<table><tr><th>model</th><th>test accuracy</th><th>fit (s)</th><th>seeds</th></tr>
{% for m in d.models %}<tr><td>{{ m.model }}</td>
<td>{{ "%.4f"|format(m.test_acc_mean) }} &plusmn; {{ "%.4f"|format(m.test_acc_std) }}</td>
<td>{{ "%.2f"|format(m.fit_s_mean) }}</td><td>{{ m.n }}</td></tr>
{% endfor %}</table>
{% endfor %}
</body></html>
"""


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
    from jinja2 import Environment

    summary = summarize(folders)
    for d in summary["datasets"]:
        for s in d["studies"]:
            s["report"] = os.path.relpath(Path(s["folder"]) / "report.html", parent)
    atomic_write_bytes(parent / "summary.json", json.dumps(summary, indent=1).encode())
    html = Environment(autoescape=True).from_string(TEMPLATE).render(**summary)
    atomic_write_bytes(parent / "summary.html", html.encode())
    return parent / "summary.html"
