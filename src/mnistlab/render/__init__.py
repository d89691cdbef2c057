"""Figures and the HTML report, built from a run folder's stored results only."""

from __future__ import annotations

import datetime
import re
from pathlib import Path

from jinja2 import Environment, PackageLoader, select_autoescape

from ..sections import SECTIONS
from ..store import RunStore
from . import classic, deep, explore, unsupervised
from .blocks import FigureSink

RENDERERS = {"explore": explore.render, "unsupervised": unsupervised.render,
             "classic": classic.render, "deep": deep.render}


def _section_results(store: RunStore, keys: list[str]) -> dict[str, dict]:
    results: dict[str, dict] = {}
    for row in store.step_rows(keys):
        results.setdefault(row["section"], {})[row["name"]] = store.load_result(row["key"])
    return results


def build_report(folder: str | Path) -> Path:
    """Write ``folder/report.html`` from the last finished study stored in ``folder``.

    Nothing is recomputed: every number and figure comes from the stored results.
    """
    from .. import __version__

    folder = Path(folder)
    store = RunStore(folder, create=False)
    try:
        study = store.last_study()
        seed = re.search(r"^seed = (\d+)", study["config"], re.M)
        study["seed"] = int(seed.group(1)) if seed else 0
        results = _section_results(store, study["step_keys"])
        if "summary" in results.get("explore", {}):
            study["class_names"] = results["explore"]["summary"].class_names
        cost = store.step_rows(study["step_keys"])
    finally:
        store.close()
    sink = FigureSink(folder / "figures")
    sections = []
    for section in SECTIONS:
        if section.NAME in results:
            blocks = RENDERERS[section.NAME](results[section.NAME], sink, study)
            sections.append({"anchor": section.NAME, "title": section.TITLE, "blocks": blocks})
    env = Environment(loader=PackageLoader("mnistlab"), autoescape=select_autoescape())
    html = env.get_template("report.html.j2").render(
        study=study, sections=sections, cost=cost, version=__version__,
        started=datetime.datetime.fromtimestamp(study["started"]).strftime("%Y-%m-%d %H:%M"),
        total_wall=f"{sum(r['wall_s'] or 0 for r in cost):.1f} s",
    )
    target = folder / "report.html"
    tmp = target.with_suffix(".html.tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(target)
    return target
