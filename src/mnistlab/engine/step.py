"""The unit of cached work: a function and the arguments it receives.

A section's ``plan`` binds each step with :func:`bind`; the step's cache key is derived from the
function's identity, the dataset fingerprint, the exact arguments bound and the keys of the
steps whose results it receives, as joblib's ``Memory.cache`` keys a call. Nothing lists by
hand which parameters matter: a step function can only read what its signature names, so a
parameter it does not take cannot serve a stale result, nor force a recomputation.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .store import to_json

# Bump when a change to the computations makes every stored result stale.
CODE_VERSION = "2"
# Keyword arguments the runner passes to a step with ``files=True``: not part of the key (they
# are derived from it).
FILE_ARGUMENTS = ("files_dir", "files_key")


@dataclass(frozen=True)
class Step:
    """One cached unit of work of a section.

    The runner calls ``fn(data, **arguments, **{arg: result of needs[arg]})``; with
    ``files=True`` it also passes ``files_dir`` (the run folder's ``models/``) and
    ``files_key`` (this step's key), so that the files a step writes are named by its key.
    """

    name: str
    fn: Callable[..., Any]
    arguments: dict[str, Any]
    # argument -> the earlier step whose result it receives, or {label: step} for a dict of them
    needs: dict[str, str | dict[str, str]] = field(default_factory=dict)
    files: bool = False
    # Computes on one core whatever it is given (libsvm, a tree, UMAP's seeded layout): the
    # runner may compute it beside another such step. How, not what: not part of the key.
    one_core: bool = False
    # A long one-core step whose library holds the GIL while it computes (UMAP's numba layout):
    # in a thread it would stall every thread beside it, so the runner computes it in a
    # process of its own, beside the other steps, from the moment its inputs are ready.
    own_process: bool = False

    @property
    def qualname(self) -> str:
        """``mnistlab.sections.classic.fit_model``: where the step's computation is written."""
        return f"{self.fn.__module__}.{self.fn.__qualname__}"

    def key(self, fingerprint: str, needed_keys: dict) -> str:
        payload = to_json({"v": CODE_VERSION, "data": fingerprint, "fn": self.qualname,
                           "args": self.arguments, "needs": needed_keys})
        return hashlib.sha256(payload.encode()).hexdigest()[:24]

    def __call__(self, data: Any, **inputs: Any) -> Any:
        """Compute the step now (no cache): what the runner does on a cache miss."""
        return self.fn(data, **self.arguments, **inputs)


def call_step(fn: Callable[..., Any], data: Any, params: Any, seed: int = 0, **given: Any) -> Any:
    """``fn`` bound as the study binds it and called on ``data``, uncached: a section's
    computation from a notebook or a test. ``given`` may hold earlier results, overrides, and
    ``files_dir``/``files_key`` for a step that writes files."""
    files = {k: given.pop(k) for k in FILE_ARGUMENTS if k in given}
    return bind(fn.__name__, fn, params, seed, files=bool(files), **given)(data, **files)


def bind(step_name: str, fn: Callable[..., Any], params: Any, seed: int, /, *,
         needs: dict[str, str | dict[str, str]] | None = None, files: bool = False,
         one_core: bool = False, own_process: bool = False, **given: Any) -> Step:
    """The step ``step_name`` calls ``fn(data, ...)``; each of ``fn``'s other parameters gets, first
    found: the result of the step ``needs`` names for it, a value ``given`` here, the study's
    ``seed``, or the field of ``params`` with the same name. ``one_core`` marks a step whose
    computation uses one core, ``own_process`` one that also holds the GIL (see :class:`Step`).

    A parameter found nowhere is a programming error, raised at plan time.
    """
    needs = dict(needs or {})
    arguments = {}
    parameters = list(inspect.signature(fn).parameters.values())[1:]  # the first is the data
    for p in parameters:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.name in needs or (files and p.name in FILE_ARGUMENTS):
            continue
        if p.name in given:
            arguments[p.name] = given.pop(p.name)
        elif p.name == "seed":
            arguments["seed"] = seed
        elif params is not None and p.name in type(params).model_fields:
            arguments[p.name] = getattr(params, p.name)
        elif p.default is not inspect.Parameter.empty:
            continue
        else:
            raise TypeError(f"step {step_name}: no value for {fn.__qualname__}'s argument {p.name!r}")
    takes_any = any(p.kind == p.VAR_KEYWORD for p in parameters)
    if given and not takes_any:
        raise TypeError(f"step {step_name}: {fn.__qualname__} takes no argument(s) {sorted(given)}")
    arguments.update(given)
    return Step(step_name, fn, arguments, needs, files, one_core or own_process, own_process)


@dataclass
class SweepPoint:
    """One point of a sweep, computed as its own step so that workers share the sweep and a new
    point computes only itself; the sweep's own step gathers the points into its result.

    ``row`` is the point's row of the sweep's table, or None where the point does not apply to
    this data (K above the number of samples); ``facts`` what every point knows of the whole
    sweep (its sample size, its dimension).
    """

    row: dict[str, Any] | None
    facts: dict[str, Any] = field(default_factory=dict)


def sweep(step_name: str, point_fn: Callable[..., SweepPoint], gather_fn: Callable[..., Any],
          params: Any, seed: int, /, *, over: str, values: list, needs: dict | None = None,
          gather_needs: dict | None = None, one_core: bool = False,
          **given: Any) -> list[Step]:
    """The steps of a sweep whose points are independent: ``step_name:VALUE`` binds
    ``point_fn`` with ``over=VALUE`` for each value (plus ``needs`` and ``given``), then
    ``step_name`` binds ``gather_fn``, which receives them as ``points`` ({str(value): point},
    in the order of ``values``) and ``gather_needs``. ``one_core`` marks the points."""
    points = [bind(f"{step_name}:{value}", point_fn, params, seed, needs=needs,
                   one_core=one_core, **{over: value}, **given) for value in values]
    labels = {str(value): point.name for value, point in zip(values, points)}
    gather = bind(step_name, gather_fn, params, seed,
                  needs={**(gather_needs or {}), "points": labels})
    return [*points, gather]


def call_sweep(point_fn: Callable[..., SweepPoint], gather_fn: Callable[..., Any], data: Any,
               params: Any, seed: int = 0, *, over: str, values: list, **given: Any) -> Any:
    """A sweep computed uncached, point after point, as :func:`call_step` computes one step;
    ``given`` goes to the points, and to the gathering where it takes the same argument."""
    points = {str(value): call_step(point_fn, data, params, seed, **{over: value}, **given)
              for value in values}
    gather_takes = inspect.signature(gather_fn).parameters
    return call_step(gather_fn, data, params, seed, points=points,
                     **{k: v for k, v in given.items() if k in gather_takes})


def gathered_rows(points: dict[str, SweepPoint]) -> list[dict[str, Any]]:
    """The rows of the points that apply, in the sweep's order."""
    return [p.row for p in points.values() if p.row is not None]
