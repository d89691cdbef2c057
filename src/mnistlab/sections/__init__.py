"""The study's sections, in report order.

Each section module has ``NAME``, ``TITLE``, a pydantic ``Params``, the ``QUICK`` overrides of the
quick profile, and ``plan(data, params, seed) -> list[Step]``. Its steps are pure functions of
the data and parameters that return result dataclasses; drawing happens in :mod:`mnistlab.report`.
"""

from . import classic, deep, explore, quality, unsupervised

SECTIONS = [explore, quality, unsupervised, classic, deep]
