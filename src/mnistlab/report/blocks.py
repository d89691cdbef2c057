"""What a section renderer returns: a list of blocks the HTML template lays out in order.

Figures are matplotlib ``Figure`` objects built without pyplot (no global state, no display);
:func:`figure_block` saves each one as PNG in the run folder and embeds it in the page.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from markupsafe import Markup, escape

from ..core.files import atomic_write_bytes

if TYPE_CHECKING:  # matplotlib is imported when a figure is drawn, not to rebuild a report
    from matplotlib.figure import Figure


Result = TypeVar("Result")


def the(results: dict, kind: type[Result]) -> Result:
    """The one result of type ``kind`` among a section's results: a renderer finds what it
    draws by the type the section's step returned (grep the type: where it is computed, where
    it is drawn), not by the step's name."""
    found = [r for r in results.values() if type(r) is kind]
    if len(found) != 1:
        raise LookupError(f"expected one {kind.__name__} among the results, found {len(found)}")
    return found[0]


def maybe(results: dict, kind: type[Result]) -> Result | None:
    """:func:`the` result of type ``kind``, or None when the section did not compute one."""
    found = [r for r in results.values() if type(r) is kind]
    return found[0] if len(found) == 1 else None


def every(results: dict, kind: type[Result]) -> list[Result]:
    """Every result of type ``kind``, in the plan's order."""
    return [r for r in results.values() if type(r) is kind]


@dataclass
class Block:
    kind: str  # "heading", "text", "table", "figure"
    text: str = ""
    html: Markup = Markup("")
    columns: list[str] = field(default_factory=list)
    rows: list[list] = field(default_factory=list)
    src: str = ""
    level: int = 3


def heading(text: str, level: int = 3) -> Block:
    return Block("heading", text=text, level=level)


def text(markup: str) -> Block:
    """A paragraph; ``markup`` may hold inline HTML (<b>, <code>) and must escape data itself."""
    return Block("text", html=Markup(markup))


def table(columns: list[str], rows: list[list], caption: str = "") -> Block:
    return Block("table", text=caption, columns=columns, rows=[[_cell(v) for v in r] for r in rows])


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1e5 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def new_figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


class FigureSink:
    """Saves figures as PNG files of the run folder and returns embeddable blocks."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)

    def block(self, name: str, fig: Figure, caption: str) -> Block:
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=100)
        png = buffer.getvalue()
        atomic_write_bytes(self.folder / f"{name}.png", png)
        src = "data:image/png;base64," + base64.b64encode(png).decode()
        return Block("figure", text=caption, src=src)


def esc(value) -> str:
    return str(escape(str(value)))


def nouns(count: int, noun: str) -> str:
    """``noun`` as ``count`` of it reads: "1 epoch", "5 epochs" (the noun only)."""
    return noun if count == 1 else noun + "s"
