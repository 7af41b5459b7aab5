"""Mann-Whitney on histogram buckets, pure.

Envoy gives per-cohort latency as bucket counts, not samples. Two cohorts binned on the same
bounds still have a Mann-Whitney statistic: a v2 request beats every v1 request in a lower
bucket and ties (counts one half) with every v1 request in its own bucket. Its excess over
one half, ``P(v2 > v1) + P(v2 = v1)/2 - 1/2``, is 0 when the cohorts' binned distributions
are the same, positive when v2 is stochastically slower, and its null variance is the usual
one with the tie correction (each bucket is one tie group).

A margin moves v1 before comparing: :meth:`Histogram.scaled` gives the distribution of
``r * X`` (v1 ``r`` times slower) on the same bounds, interpolating linearly inside a bucket
as ``histogram_quantile`` does, so "v2 more than 10 % slower than v1" is "v2 stochastically
slower than 1.1 x v1". :meth:`Histogram.shifted` does the same for an additive margin.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Histogram:
    """Counts per bucket: bucket k holds values in ``(bounds[k-1], bounds[k]]``, the first
    from ``lower``; the last bound may be ``inf``. Counts may be fractional (re-binned)."""

    bounds: tuple[float, ...]
    counts: tuple[float, ...]
    lower: float = 0.0

    @classmethod
    def from_cumulative(
        cls, buckets: Sequence[tuple[float, float]], lower: float = 0.0
    ) -> Histogram:
        """From Prometheus-style cumulative ``(le, count)`` pairs, sorted by ``le``."""
        bounds = tuple(le for le, _ in buckets)
        counts, below = [], 0.0
        for _, cumulative in buckets:
            counts.append(max(cumulative - below, 0.0))
            below = max(cumulative, below)
        return cls(bounds, tuple(counts), lower)

    @property
    def total(self) -> float:
        return math.fsum(self.counts)

    def cdf(self, x: float) -> float:
        """Count at or below ``x``, linear inside a finite bucket; an infinite bucket's count
        lies above every finite ``x``."""
        below, lower = 0.0, self.lower
        for upper, count in zip(self.bounds, self.counts, strict=True):
            if x < upper:
                if x <= lower or math.isinf(upper):
                    return below
                return below + count * (x - lower) / (upper - lower)
            below += count
            lower = upper
        return below

    def scaled(self, ratio: float) -> Histogram:
        """The distribution of ``ratio * X`` on the same bounds (``ratio`` > 0)."""
        return self._mapped(lambda bound: bound / ratio)

    def shifted(self, shift: float) -> Histogram:
        """The distribution of ``X + shift`` on the same bounds."""
        return self._mapped(lambda bound: bound - shift)

    def _mapped(self, inverse: Callable[[float], float]) -> Histogram:
        """Re-binned on the same bounds; what moves past the last bound stays in the last
        bucket, what moves below ``lower`` lands in the first."""
        counts, before, last = [], 0.0, len(self.bounds) - 1
        for k, upper in enumerate(self.bounds):
            at = self.total if k == last else self.cdf(inverse(upper))
            counts.append(max(at - before, 0.0))
            before = max(at, before)
        return Histogram(self.bounds, tuple(counts), self.lower)


def excess(worse: Histogram, base: Histogram) -> tuple[float, float]:
    """``(P(W > B) + P(W = B)/2 - 1/2, its variance under W ~ B)`` for W drawn from
    ``worse`` and B from ``base`` (same bounds; ValueError otherwise). (0, 0) without data."""
    if worse.bounds != base.bounds:
        raise ValueError("histograms on different bucket bounds cannot be compared")
    n_worse, n_base = worse.total, base.total
    if n_worse <= 0 or n_base <= 0:
        return 0.0, 0.0
    wins, below, ties = 0.0, 0.0, 0.0
    for w, b in zip(worse.counts, base.counts, strict=True):
        wins += w * (below + 0.5 * b)
        below += b
        t = w + b
        ties += t * t * t - t
    pairs = n_worse * n_base
    n = n_worse + n_base
    if n < 2:
        return wins / pairs - 0.5, 0.0
    variance_u = pairs / 12.0 * ((n + 1.0) - ties / (n * (n - 1.0)))
    return wins / pairs - 0.5, max(variance_u, 0.0) / (pairs * pairs)
