"""Classic models saved without pickle: scikit-learn pipelines in skops files.

skops is scikit-learn's documented secure format: loading builds only the types it is told to
trust. scikit-learn's own estimators it trusts by itself; the others a saved pipeline may hold
are mnistlab's input preparation and SVC (:data:`TRUSTED_TYPES`) and what the caller adds: the
classic models' registry lists the library types its estimators hold (the trees of a forest).
"""

from __future__ import annotations

import importlib
import logging
import sys
from pathlib import Path

from .. import __version__
from ..core.errors import ModelLoadError
from ..core.files import atomic_write_bytes

log = logging.getLogger("mnistlab")

# Our own types a saved pipeline may hold, by the path skops records: the input preparation
# and our SVC (names, not classes: reading a run folder's catalog imports no scikit-learn).
OWN_TYPES = ("mnistlab.models.pipeline.ImageInputs", "mnistlab.models.svc.SVC")
# Where those modules were before mnistlab's layered packages: a model saved then still loads.
MOVED_MODULES = {"mnistlab.pipeline": "mnistlab.models.pipeline",
                 "mnistlab.svc": "mnistlab.models.svc"}
TRUSTED_TYPES = frozenset(OWN_TYPES) | {
    old + name[len(new):] for old, new in MOVED_MODULES.items() for name in OWN_TYPES
    if name.startswith(new + ".")}


def library_versions() -> dict[str, str]:
    """The versions a saved model depends on, recorded beside it."""
    from importlib.metadata import version

    return {"mnistlab": __version__, "scikit-learn": version("scikit-learn"),
            "skops": version("skops"), "numpy": version("numpy")}


def save_pipeline(inputs, estimator, path: Path) -> Path:
    """``Pipeline([("inputs", inputs), ("model", estimator)])`` to ``path`` (skops), written
    whole or not at all."""
    import skops.io as sio
    from sklearn.pipeline import Pipeline

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, sio.dumps(Pipeline([("inputs", inputs), ("model", estimator)])))
    return path


def load_pipeline(path: Path, versions: dict[str, str] | None = None,
                  also_trusted: frozenset[str] = frozenset()):
    """The pipeline saved at ``path``: refused in one line when it holds a type outside
    :data:`TRUSTED_TYPES` and ``also_trusted`` or cannot be read; a warning when
    scikit-learn's version differs from ``versions``' (those it was saved with)."""
    import skops.io as sio

    try:
        untrusted = set(sio.get_untrusted_types(file=path))
    except Exception as exc:  # skops raises many kinds on a damaged file
        raise ModelLoadError(f"{path}: not a readable skops model ({type(exc).__name__}: "
                             f"{exc})") from None
    unknown = sorted(untrusted - TRUSTED_TYPES - also_trusted)
    if unknown:
        raise ModelLoadError(f"{path}: refused, it holds types mnistlab does not trust: "
                             f"{', '.join(unknown)}")
    for old, new in MOVED_MODULES.items():  # skops imports a type by the path it recorded
        if any(name.startswith(old + ".") for name in untrusted):
            sys.modules.setdefault(old, importlib.import_module(new))
    saved_with = (versions or {}).get("scikit-learn")
    current = library_versions()["scikit-learn"]
    if saved_with and saved_with != current:
        log.warning("%s was saved with scikit-learn %s and is loaded with %s: its predictions "
                    "may differ from the report's", path.name, saved_with, current)
    try:
        return sio.load(path, trusted=sorted(untrusted))
    except Exception as exc:
        raise ModelLoadError(f"{path}: cannot be loaded with scikit-learn {current} "
                             f"({type(exc).__name__}: {exc}); rerun the study to refit it"
                             ) from None
