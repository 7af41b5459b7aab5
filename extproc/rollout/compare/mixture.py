"""The normal-mixture sequential probability ratio (mSPRT) on an asymptotically normal
statistic (Robbins 1970; Johari, Koomen, Pekelis, Walsh, "Always valid inference", 2017/2022).

A statistic ``excess`` estimates a parameter ``theta`` with variance ``variance`` that shrinks
as samples accumulate (``excess ~ N(theta, variance)``). Mixing the likelihood ratio of
``theta`` against ``theta = 0`` over a prior ``N(0, tau2)`` gives a nonnegative martingale
under ``theta = 0`` (a supermartingale under ``theta < 0`` for the one-sided mixture), so by
Ville's inequality ``P(sup_n ratio_n >= 1/alpha) <= alpha``: the test may be looked at after
every batch of data, as often as one likes, and its false-alarm rate stays at ``alpha``.
"""

from __future__ import annotations

import math

LOG_HALF = math.log(0.5)


def log_ratio_one_sided(excess: float, variance: float, tau2: float) -> float:
    """log of the mixture ratio over a half-normal prior on ``theta > 0``:
    ``2 sqrt(V/(V+t)) exp(x^2 t / (2V(V+t))) Phi(x sqrt(t) / sqrt(V(V+t)))``; 0 (no
    evidence) when ``variance`` is not positive."""
    if not variance > 0:
        return 0.0
    total = variance + tau2
    quadratic = excess * excess * tau2 / (2.0 * variance * total)
    z = excess * math.sqrt(tau2 / (variance * total))
    return math.log(2.0) + 0.5 * math.log(variance / total) + quadratic + _log_phi(z)


def log_ratio_two_sided(excess: float, variance: float, tau2: float) -> float:
    """log of the mixture ratio over ``N(0, tau2)``; 0 when ``variance`` is not positive."""
    if not variance > 0:
        return 0.0
    total = variance + tau2
    return 0.5 * math.log(variance / total) + excess * excess * tau2 / (2.0 * variance * total)


def radius(variance: float, tau2: float, alpha: float) -> float:
    """Half width of the two-sided confidence sequence at level ``1 - alpha``: the values
    ``theta`` whose two-sided ratio stays below ``1/alpha``. Infinite without variance."""
    if not variance > 0:
        return math.inf
    total = variance + tau2
    return math.sqrt(
        variance * total / tau2 * (2.0 * math.log(1.0 / alpha) + math.log(total / variance))
    )


def _log_phi(z: float) -> float:
    """log of the standard normal CDF, accurate in the far left tail."""
    if z > -30.0:
        value = 0.5 * math.erfc(-z / math.sqrt(2.0))
        return math.log(value) if value > 0 else -math.inf
    # Mills ratio: Phi(z) ~ phi(z) / |z| for z -> -inf
    return -0.5 * z * z - math.log(-z) - 0.5 * math.log(2.0 * math.pi)
