"""The comparison statistics of extproc.rollout.compare, vectorized with numpy over many
simulated stages and looks at once. Each function mirrors one pure function of the core
(tests/loadtest/test_compare_sim.py checks they agree on random inputs), so the bench
measures the shipped method, only faster.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray
from scipy.special import log_ndtr, ndtri

from extproc.rollout.compare.events import SHIFTS
from extproc.rollout.compare.histogram import Histogram

Array = NDArray[np.float64]


def rebin_matrix(bounds: tuple[float, ...], lower: float, ratio: float, shift: float) -> Array:
    """The linear map counts -> counts of ``Histogram.scaled(ratio)`` (if ``shift`` is 0) or
    ``Histogram.shifted(shift)``, built by applying the core to each unit histogram."""
    size = len(bounds)
    matrix = np.zeros((size, size))
    for j in range(size):
        unit = Histogram(bounds, tuple(1.0 if k == j else 0.0 for k in range(size)), lower)
        moved = unit.shifted(shift) if shift else unit.scaled(ratio)
        matrix[j] = moved.counts
    return matrix


def mann_whitney_excess(worse: Array, base: Array) -> tuple[Array, Array]:
    """``histogram.excess`` over the last axis (bucket counts); (0, 0) without data."""
    n_worse = worse.sum(axis=-1)
    n_base = base.sum(axis=-1)
    below = np.cumsum(base, axis=-1) - base
    wins = (worse * (below + 0.5 * base)).sum(axis=-1)
    t = worse + base
    ties = (t * t * t - t).sum(axis=-1)
    pairs = n_worse * n_base
    n = n_worse + n_base
    with np.errstate(divide="ignore", invalid="ignore"):
        value = np.where(pairs > 0, wins / pairs - 0.5, 0.0)
        var_u = pairs / 12.0 * ((n + 1.0) - ties / (n * (n - 1.0)))
        variance = np.where((pairs > 0) & (n >= 2), np.maximum(var_u, 0.0) / (pairs * pairs), 0.0)
    return value, variance


def rate_excess(
    events2: Array, trials2: Array, events1: Array, trials1: Array, ratio: float
) -> tuple[Array, Array]:
    """``rates.excess`` elementwise."""
    ok = (trials2 > 0) & (trials1 > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        p1 = np.minimum((events1 + events2) / (trials1 + ratio * trials2), min(1.0 / ratio, 1.0))
        p2 = ratio * p1
        variance = p2 * (1 - p2) / trials2 + ratio * ratio * p1 * (1 - p1) / trials1
        value = events2 / trials2 - ratio * events1 / trials1
    return np.where(ok, value, 0.0), np.where(ok, np.maximum(variance, 0.0), 0.0)


def event_log_ratio(x2: Array, n2: Array, x1: Array, n1: Array, ratio: float) -> Array:
    """``events.EventTest`` over looks: per-look counts (stages, looks) in, the running log
    mixture ratio after each look out."""
    ok = (n2 > 0) & (n1 > 0) & (x1 + x2 > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        pi = np.where(ok, ratio * n2 / (n1 + ratio * n2), 0.5)
    odds = pi / (1.0 - pi)
    per_shift = []
    for shift in SHIFTS:
        alt = odds * math.exp(shift)
        pi_alt = alt / (1.0 + alt)
        step = x2 * np.log(pi_alt / pi) + x1 * np.log((1.0 - pi_alt) / (1.0 - pi))
        per_shift.append(np.cumsum(np.where(ok, step, 0.0), axis=1))
    stacked = np.stack(per_shift)  # (shifts, stages, looks)
    top = stacked.max(axis=0)
    return np.asarray(top + np.log(np.exp(stacked - top).mean(axis=0)), dtype=np.float64)


def log_ratio_one_sided(value: Array, variance: Array, tau2: Array | float) -> Array:
    """``mixture.log_ratio_one_sided`` elementwise (0 where the variance is 0)."""
    ok = variance > 0
    v = np.where(ok, variance, 1.0)
    total = v + tau2
    quadratic = value * value * tau2 / (2.0 * v * total)
    z = value * np.sqrt(tau2 / (v * total))
    out = math.log(2.0) + 0.5 * np.log(v / total) + quadratic + log_ndtr(z)
    return np.where(ok, out, 0.0)


def z_excess(value: Array, variance: Array) -> Array:
    """The fixed-horizon z statistic (0 where the variance is 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(variance > 0, value / np.sqrt(variance), 0.0)


def z_critical(alpha: float) -> float:
    """One-sided critical value of the fixed-horizon test."""
    return float(ndtri(1.0 - alpha))
