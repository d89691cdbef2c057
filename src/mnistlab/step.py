"""The unit of cached work that sections plan and the runner executes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Step:
    """One cached unit of work of a section.

    ``run`` receives the results of the steps named in ``needs`` (earlier steps of the same
    section) and returns a result dataclass; with ``files=True`` it also receives the run
    folder, for files a user keeps (trained weights). ``params`` holds everything besides the
    data and those inputs that the result depends on: it makes the cache key.
    """

    name: str
    params: dict
    run: Callable[..., Any]
    needs: tuple[str, ...] = ()
    files: bool = False
