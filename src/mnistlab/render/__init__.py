"""Figures and the HTML report, built from a run folder's stored results only."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from jinja2 import Environment, PackageLoader
from matplotlib.figure import Figure

from ..sections import SECTIONS
from ..store import RunStore
from . import classic, deep, explore, unsupervised
from .blocks import Block, FigureSink
from .context import StudyContext, study_context

__all__ = ["StudyContext", "StudyResults", "build_report", "load_study"]

RENDERERS = {"explore": explore.render, "unsupervised": unsupervised.render,
             "classic": classic.render, "deep": deep.render}


def _section_results(store: RunStore, keys: list[str]) -> dict[str, dict]:
    results: dict[str, dict] = {}
    for row in store.step_rows(keys):
        results.setdefault(row["section"], {})[row["name"]] = store.load_result(row["key"])
    return results


@dataclass
class StudyResults:
    """The last finished study of a run folder: its context, every step's typed result (by
    section, then step name, e.g. ``results["classic"]["model:svc-rbf"]``) and its cost.

    Examples
    --------
    >>> study = load_study("runs/mnist-5k")  # doctest: +SKIP
    >>> study.results["classic"]["best"].name  # doctest: +SKIP
    'svc-rbf'
    >>> study.figure("classic-confusion")  # a matplotlib Figure, shown inline  # doctest: +SKIP
    """

    folder: Path
    context: StudyContext
    results: dict[str, dict[str, object]]
    cost: list[dict]

    def figures(self) -> dict[str, Figure]:
        """Every figure of the report, by name, drawn from the stored results."""
        sink = _FigureCollector()
        for section in SECTIONS:
            if section.NAME in self.results:
                RENDERERS[section.NAME](self.results[section.NAME], sink, self.context)
        return sink.figures

    def figure(self, name: str) -> Figure:
        figures = self.figures()
        if name not in figures:
            raise KeyError(f"no figure {name!r}; this study has {', '.join(figures)}")
        return figures[name]


class _FigureCollector(FigureSink):
    """Keeps the figures instead of writing PNG files (a notebook shows them inline)."""

    def __init__(self) -> None:
        self.figures: dict[str, Figure] = {}

    def block(self, name: str, fig: Figure, caption: str) -> Block:
        self.figures[name] = fig
        return Block("figure", text=caption)


def load_study(folder: str | Path) -> StudyResults:
    """The results of the last finished study in ``folder``, recomputing nothing."""
    folder = Path(folder)
    store = RunStore(folder, create=False)
    try:
        stored = store.last_study()
        results = _section_results(store, stored["step_keys"])
        context = study_context(stored, results, folder)
        cost = store.step_rows(context.step_keys)
    finally:
        store.close()
    return StudyResults(folder, context, results, cost)


def build_report(folder: str | Path) -> Path:
    """Write ``folder/report.html`` from the last finished study stored in ``folder``.

    Nothing is recomputed: every number and figure comes from the stored results.
    """
    from .. import __version__

    loaded = load_study(folder)
    folder, study, results, cost = loaded.folder, loaded.context, loaded.results, loaded.cost
    sink = FigureSink(folder / "figures")
    sections = []
    for section in SECTIONS:
        if section.NAME in results:
            blocks = RENDERERS[section.NAME](results[section.NAME], sink, study)
            sections.append({"anchor": section.NAME, "title": section.TITLE, "blocks": blocks})
    # autoescape: the template is named .html.j2, which select_autoescape() would not escape;
    # class and dataset names come from the user's folders.
    env = Environment(loader=PackageLoader("mnistlab"), autoescape=True)
    html = env.get_template("report.html.j2").render(
        study=study, sections=sections, cost=cost, version=__version__,
        started=datetime.datetime.fromtimestamp(study.started).strftime("%Y-%m-%d %H:%M"),
        total_wall=f"{sum(r['wall_s'] or 0 for r in cost):.1f} s",
    )
    target = folder / "report.html"
    tmp = target.with_suffix(".html.tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(target)
    return target
