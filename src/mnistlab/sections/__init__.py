"""The study's sections, in report order.

Each section module has ``NAME``, ``TITLE``, a pydantic ``Params``, the ``QUICK`` overrides of the
quick profile, and ``plan(data, params, seed, engine, earlier) -> list[Step]``. Its steps are
pure functions of the data and parameters that return result dataclasses; drawing happens in
:mod:`mnistlab.report`. ``earlier`` holds the steps of the sections planned before it, by
``"section/step"``: a step may need one of them by that name (the robustness section scores the
models the classic and deep sections train).
"""

from . import classic, deep, explore, quality, robustness, unsupervised

SECTIONS = [explore, quality, unsupervised, classic, deep, robustness]
