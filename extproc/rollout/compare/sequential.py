"""One look of a sequential comparison of v2 against v1, and what it carries to the next.

A look has two halves. The *test* asks whether v2 is worse than v1 by more than the margin:
the one-sided mixture ratio (:mod:`.mixture`) of the statistic at the margin, accumulated
as its running maximum over the stage. Its reciprocal is an anytime-valid p-value; the guard
fails once it is at most ``alpha``. The *estimate* is for people: the effect (the change at
which the statistic is 0, a Hodges-Lehmann-type estimate) and the two-sided ``1 - alpha``
confidence sequence on it, found by bisection since the statistic falls as the change grows.

A change is relative for a scale (``0.2``: v2 is 1.2 x v1; latency, rates) and absolute for
a shift (``0.2``: v2 is worse by 0.2 points; scores such as MOS, oriented so that higher is
worse).

Verdict: fewer than ``min_samples`` in either cohort -> hold (and the look is not counted);
else fail if the anytime p-value is at most ``alpha``; else pass.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

from extproc.rollout.compare import histogram, mixture, rates
from extproc.rollout.compare.histogram import Histogram
from extproc.rollout.compare.rates import Counts

#: Mixture scale on the Mann-Whitney excess P(v2 > v1) - 1/2: effects of a few hundredths
#: (a 10-20 % latency shift on a typical spread) are found fastest; see the docs page.
LATENCY_TAU = 0.05
#: Mixture scale on the rate difference, in units of the pooled rate: a v2 rate about
#: twice v1's is the effect of interest.
RATE_TAU_FACTOR = 1.0
#: The ranges searched for effects and interval ends: ratios v2 / v1 for a scale
#: (geometric search), points for a shift.
RATIO_RANGE = (1.0 / 64.0, 64.0)
SHIFT_RANGE = (-100.0, 100.0)
_BISECTIONS = 40

Statistic = Callable[[float], tuple[float, float]]  # change -> (excess, variance); falls


@dataclass(frozen=True, slots=True)
class Running:
    """What a test carries between looks of one stage: the largest log mixture ratio seen
    (at the margin) and the number of looks counted."""

    best_log_e: float = 0.0
    looks: int = 0

    def after(self, log_e: float) -> Running:
        return replace(self, best_log_e=max(self.best_log_e, log_e), looks=self.looks + 1)

    @property
    def p_value(self) -> float:
        """The anytime-valid p-value: 1 / the largest mixture ratio so far, at most 1."""
        return min(1.0, math.exp(-self.best_log_e))


@dataclass(frozen=True, slots=True)
class Look:
    """One look's figures (changes v2 vs v1; None where undefined or beyond the range)."""

    verdict: str  # "pass" | "hold" | "fail"
    effect: float | None
    low: float | None
    high: float | None
    p_value: float
    e_value: float  # this look's mixture ratio at the margin
    samples_v2: float
    samples_v1: float
    running: Running


def latency_statistic(v2: Histogram, v1: Histogram) -> Statistic:
    """Mann-Whitney excess of v2 over v1 made ``1 + change`` times slower."""
    return lambda change: histogram.excess(v2, v1.scaled(1.0 + change))


def score_statistic(v2: Histogram, v1: Histogram) -> Statistic:
    """Mann-Whitney excess of v2 over v1 made worse by ``change`` points (histograms of a
    score where higher is worse, e.g. 5 - MOS)."""
    return lambda change: histogram.excess(v2, v1.shifted(change))


def rate_statistic(v2: Counts, v1: Counts) -> Statistic:
    """v2's rate minus ``1 + change`` times v1's."""
    return lambda change: rates.excess(v2, v1, 1.0 + change)


def rate_tau2(v2: Counts, v1: Counts) -> float:
    tau = RATE_TAU_FACTOR * max(rates.pooled_rate(v2, v1), 1e-6)
    return tau * tau


def log_evidence(statistic: Statistic, margin: float, tau2: float) -> float:
    """log of the one-sided mixture ratio for "v2 is worse than v1 by more than margin"."""
    value, variance = statistic(margin)
    return mixture.log_ratio_one_sided(value, variance, tau2)


def look(
    statistic: Statistic,
    *,
    margin: float,
    alpha: float,
    tau2: float,
    samples_v2: float,
    samples_v1: float,
    min_samples: int,
    running: Running,
    shift: bool = False,
    log_e: float | None = None,
) -> Look:
    """One look (see the module docstring); ``running`` is the previous look's. ``log_e``
    replaces the mixture on ``statistic`` for the test (rates: :mod:`.events`); the
    statistic then still gives the estimate."""
    if log_e is None:
        log_e = log_evidence(statistic, margin, tau2)
    if min(samples_v2, samples_v1) < min_samples:
        verdict = "hold"
    else:
        running = running.after(log_e)
        verdict = "fail" if running.p_value <= alpha else "pass"
    effect, low, high = estimate(statistic, alpha, tau2, shift=shift)
    return Look(
        verdict=verdict,
        effect=effect,
        low=low,
        high=high,
        p_value=running.p_value,
        e_value=math.exp(min(log_e, 700.0)),
        samples_v2=samples_v2,
        samples_v1=samples_v1,
        running=running,
    )


def estimate(
    statistic: Statistic, alpha: float, tau2: float, *, shift: bool = False
) -> tuple[float | None, float | None, float | None]:
    """(effect, low, high): the changes where the statistic crosses 0, + radius, - radius."""

    def centre(ratio: float) -> float:
        return statistic(ratio)[0]

    def upper_edge(ratio: float) -> float:  # > 0 while v2 is surely worse than ratio x v1
        value, variance = statistic(ratio)
        return value - mixture.radius(variance, tau2, alpha)

    def lower_edge(ratio: float) -> float:  # > 0 until v2 is surely better than ratio x v1
        value, variance = statistic(ratio)
        return value + mixture.radius(variance, tau2, alpha)

    if statistic(0.0)[1] <= 0:
        return None, None, None
    return (
        _root(centre, shift),
        _root(upper_edge, shift),
        _root(lower_edge, shift),
    )


def _root(falling: Callable[[float], float], shift: bool) -> float | None:
    """The change where ``falling`` crosses 0, by bisection (geometric on the ratio for a
    scale); None if it does not cross inside the range."""
    lo, hi = SHIFT_RANGE if shift else RATIO_RANGE

    def at(x: float) -> float:
        return falling(x if shift else x - 1.0)

    if not (at(lo) > 0 >= at(hi)):
        return None
    for _ in range(_BISECTIONS):
        mid = (lo + hi) / 2.0 if shift else math.sqrt(lo * hi)
        if at(mid) > 0:
            lo = mid
        else:
            hi = mid
    mid = (lo + hi) / 2.0 if shift else math.sqrt(lo * hi)
    return mid if shift else mid - 1.0
