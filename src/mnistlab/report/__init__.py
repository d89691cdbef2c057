"""Figures and the HTML report, built from a run folder's stored results only."""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import logging
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from jinja2 import Environment, PackageLoader
from markupsafe import Markup

from .. import __version__
from ..core.files import atomic_write_bytes
from ..core.machine import usable_cores, yield_to_the_study
from ..engine.store import RunStore, to_json
from ..models.fitting import ACCELERATED
from ..sections import SECTIONS
from ..study.catalog import model_entries
from ..study.results import StudyContext, StudyResults, load_study, section_results, study_context
from . import classic, deep, explore, quality, robustness, unsupervised
from .blocks import Block, FigureSink
from .leaderboard import leak_effects, write_leaderboard

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["BackgroundDrawing", "build_report", "draw_figures", "draw_sections"]

log = logging.getLogger(__name__)


class _FigureCollector(FigureSink):
    """Keeps the figures instead of writing PNG files (a notebook shows them inline)."""

    def __init__(self) -> None:
        self.figures: dict[str, Figure] = {}

    def block(self, name: str, fig: Figure, caption: str) -> Block:
        self.figures[name] = fig
        return Block("figure", text=caption)


def draw_figures(study: StudyResults) -> dict[str, Figure]:
    """Every figure of the report of a loaded study (:func:`~mnistlab.load_study`), by name,
    drawn from its stored results (a notebook shows them inline).

    Examples
    --------
    >>> figures = draw_figures(load_study("runs/mnist-5k"))  # doctest: +SKIP
    >>> figures["classic-confusion"]  # doctest: +SKIP
    """
    sink = _FigureCollector()
    for section in SECTIONS:
        if section.NAME in study.results:
            RENDERERS[section.NAME](study.results[section.NAME], sink, study.context)
    return sink.figures


RENDERERS = {"explore": explore.render, "quality": quality.render,
             "unsupervised": unsupervised.render,
             "classic": classic.render, "deep": deep.render, "robustness": robustness.render}


def _render_version() -> str:
    """Changes whenever the code that writes the report's text and figures changes."""
    digest = hashlib.sha256(__version__.encode())
    for source in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(source.read_bytes())
    return digest.hexdigest()[:16]


def _section_cache(folder: Path, study: StudyContext, section: str, keys: list[str]) -> Path:
    """Where the rendered blocks of ``section`` are kept: named by everything they depend on
    (the section's step keys, what the renderer reads of the study, the renderer's code). A
    renderer reads no other section's parameters, so only its own are part of the name."""
    payload = to_json({"render": _render_version(), "keys": keys, "seed": study.seed,
                       "classes": study.class_names, "profile": study.profile,
                       "dataset": study.dataset,
                       "params": getattr(study.config, section).model_dump(mode="json")})
    key = hashlib.sha256(payload.encode()).hexdigest()[:24]
    return folder / "figures" / f".{section}-{key}.json"


def draw_sections(folder: str | Path, study_id: int, keys: dict[str, list[str]]) -> None:
    """Draw the figures and text of the sections ``keys`` names (section -> its step keys,
    every one stored) of the study ``study_id``, which may still be running: the report
    built when it ends finds them drawn. The study runs this while it has nothing else to
    do but wait for a step computing in a process of its own."""
    folder = Path(folder)
    store = RunStore(folder, create=False)
    try:
        stored = store.study(study_id)
        results = section_results(store, [key for k in keys.values() for key in k])
    finally:
        store.close()
    study = study_context(stored, results, folder)
    sink = FigureSink(folder / "figures")
    for name, section_keys in keys.items():
        path = _section_cache(folder, study, name, section_keys)
        if _cached_blocks(path) is None:
            _draw(name, results[name], sink, study, path)


def _draw_at_idle_priority() -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the study's to handle
    yield_to_the_study()


class BackgroundDrawing:
    """Draws finished sections (see :func:`draw_sections`) in processes of their own (one a
    core), on the cycles the study leaves idle, while it computes the next ones; so that the
    report, built when the study ends, finds them drawn. Give it to :func:`run_study` as
    ``section_done``.

    A section it did not draw (a failure, Ctrl-C) is drawn by :func:`build_report` as usual.
    """

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self._pool = None
        self._queued: list[tuple[Future, int, dict[str, list[str]]]] = []

    def __call__(self, study_id: int, keys: dict[str, list[str]]) -> None:
        for section, section_keys in keys.items():  # sections that end together, side by side
            self._submit(study_id, {section: section_keys})

    def _submit(self, study_id: int, keys: dict[str, list[str]]) -> None:
        try:
            if self._pool is None:
                import multiprocessing

                # One process a core (up to one a section): the last sections end together
                # as the study ends (a quick study's embedding and networks), and one process
                # drew them one after the other (7.5 s after the last step).
                self._pool = ProcessPoolExecutor(
                    max(1, min(usable_cores(), len(SECTIONS))),
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_draw_at_idle_priority)
            future = self._pool.submit(draw_sections, self.folder, study_id, keys)
        except Exception as exc:  # the process died (or never started): the report draws them
            log.warning("drawing %s in the background failed: %s", ", ".join(keys), exc)
            return
        self._queued.append((future, study_id, keys))

    def finish(self) -> None:
        """Draw here what no drawing process has started (beside them), then wait for them."""
        started = []
        for future, study_id, keys in self._queued:
            if future.cancel():
                draw_sections(self.folder, study_id, keys)
            else:
                started.append((future, keys))
        for future, keys in started:
            try:
                future.result()
            except Exception as exc:  # build_report draws them again, and says what fails
                log.warning("drawing %s in the background failed: %s", ", ".join(keys), exc)
        self.close()

    def close(self, wait: bool = True) -> None:
        """Drop what has not started; wait for the section being drawn (unless not ``wait``:
        after Ctrl-C or a failure)."""
        if self._pool is not None:
            self._pool.shutdown(wait=wait, cancel_futures=True)
            self._pool = None
        self._queued.clear()

    def __enter__(self) -> BackgroundDrawing:
        return self

    def __exit__(self, exc_type, *exc_info) -> None:
        self.close(wait=exc_type is None)


def _draw(section: str, results: dict, sink: FigureSink, study: StudyContext,
          path: Path) -> list[Block]:
    """A section's figures and text, drawn from its results and kept at ``path``."""
    blocks = RENDERERS[section](results, sink, study)
    _store_blocks(path, section, blocks)
    return blocks


def _cached_blocks(path: Path) -> list[Block] | None:
    """The drawn blocks kept at ``path``, or None (then the section is drawn again) when they
    are missing or damaged: the file's first line is the SHA-256 of the rest, so a changed
    byte in an embedded figure is never put in a report."""
    try:
        digest, _, payload = path.read_bytes().partition(b"\n")
        if hashlib.sha256(payload).hexdigest().encode() != digest:
            return None
        stored = json.loads(payload)
    except (OSError, ValueError):
        return None
    return [Block(**{**b, "html": Markup(b["html"])}) for b in stored]


def _store_blocks(path: Path, section: str, blocks: list[Block]) -> None:
    for old in path.parent.glob(f".{section}-*.json"):
        old.unlink(missing_ok=True)
    payload = json.dumps([dataclasses.asdict(b) for b in blocks]).encode()
    atomic_write_bytes(path, hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload)


def build_report(folder: str | Path) -> Path:
    """Write ``folder/report.html`` from the last finished study stored in ``folder``.

    Nothing is recomputed: every number and figure comes from the stored results. A section's
    figures and text are drawn once and kept beside its figures; a rebuild redraws only the
    sections whose results (or whose renderer) changed.
    """
    folder = Path(folder)
    index = load_study(folder, sections=set())
    study, cost = index.context, index.cost
    sink = FigureSink(folder / "figures")
    keys = {section.NAME: [r["key"] for r in cost if r["section"] == section.NAME]
            for section in SECTIONS}
    caches = {name: _section_cache(folder, study, name, k) for name, k in keys.items() if k}
    blocks = {name: _cached_blocks(path) for name, path in caches.items()}
    store = RunStore(folder, create=False)
    try:  # drawn blocks stand for their results only while those still load (cheap check)
        stale = {name for name, b in blocks.items()
                 if b is None or any(store.stored_problem(k) for k in keys[name])}
    finally:
        store.close()
    if stale:
        results = load_study(folder, sections=stale).results
        for name in stale:
            blocks[name] = _draw(name, results[name], sink, study, caches[name])
    models = load_study(folder, sections={"classic", "deep", "quality", "robustness"})
    entries = model_entries(models)
    effects = leak_effects(models, entries)
    if "quality" in blocks:  # reads the models' stored predictions: cheap, so never kept
        blocks["quality"] = blocks["quality"] + quality.model_leak_blocks(
            effects, {name: e.label for name, e in entries.items()})
    sections = [{"anchor": section.NAME, "title": section.TITLE, "blocks": blocks[section.NAME]}
                for section in SECTIONS if section.NAME in blocks]
    # autoescape: the template is named .html.j2, which select_autoescape() would not escape;
    # class and dataset names come from the user's folders.
    env = Environment(loader=PackageLoader("mnistlab"), autoescape=True)
    html = env.get_template("report.html.j2").render(
        study=study, sections=sections, cost=cost, version=__version__, accelerated=ACCELERATED,
        started=datetime.datetime.fromtimestamp(study.started).strftime("%Y-%m-%d %H:%M"),
        total_wall=f"{sum(r['wall_s'] or 0 for r in cost):.1f} s",
    )

    write_leaderboard(folder, models)
    if keys["quality"]:
        quality.write_data_issues(folder, models.results["quality"], study.class_names,
                                  study.dataset, effects)
    target = folder / "report.html"
    atomic_write_bytes(target, html.encode("utf-8"))
    return target
