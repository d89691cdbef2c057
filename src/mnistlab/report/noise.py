"""The noise the report's verdicts read: a difference within it is said to be no difference.

One place for the thresholds that several report parts share; a part's own thresholds (the
score noise of clustering, the accuracy noise of a sweep) stay beside the sentences they decide.
"""

from __future__ import annotations

# A time is one measurement on a machine the run shares: a quarter more or less is not read as
# faster or slower.
SPEED_MARGIN = 1.25


def gain_noise(accuracies: list[float], n_test: int) -> float:
    """Twice the standard error of (a1 - a0) - (b1 - b0) when each accuracy is a binomial share
    of ``n_test`` test images (taken as independent: the models err on different images)."""
    return 2 * (sum(a * (1 - a) for a in accuracies) / n_test) ** 0.5


def within_chance(accuracy: float, chance: float, n: int) -> bool:
    """``accuracy`` on ``n`` images is no more than twice the binomial noise above the
    ``chance`` of a guess (a constant answer, or one class picked at random)."""
    return accuracy <= chance + 2 * (chance * (1 - chance) / n) ** 0.5


def p_value(p: float) -> str:
    """``p`` as the report writes it: two significant digits, never a rounded "p = 1" (a test
    proves no equality; above 0.99 it only fails to find a difference)."""
    return "p > 0.99" if p > 0.99 else f"p = {p:.2g}"
