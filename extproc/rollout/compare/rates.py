"""Two proportions (e.g. 5xx over completed requests), pure.

At a ratio ``r`` the statistic is ``p2 - r * p1``: positive when v2's rate is more than ``r``
times v1's. Its variance is taken at the null ``p2 = r * p1``, with ``p1`` estimated from
both cohorts under that constraint (``(x1 + x2) / (n1 + r n2)``, the rare-event MLE), so
that a cohort with no errors yet still has a variance.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Counts:
    """Events (e.g. 5xx) out of trials (completed requests) of one cohort."""

    events: float
    trials: float

    @property
    def rate(self) -> float | None:
        return self.events / self.trials if self.trials > 0 else None


def excess(v2: Counts, v1: Counts, ratio: float) -> tuple[float, float]:
    """``(p2 - ratio * p1, its variance at p2 = ratio * p1)``; (0, 0) without trials or
    without any event in either cohort (no evidence either way)."""
    if v2.trials <= 0 or v1.trials <= 0:
        return 0.0, 0.0
    p1_null = (v1.events + v2.events) / (v1.trials + ratio * v2.trials)
    p1_null = min(p1_null, 1.0 / ratio, 1.0)
    p2_null = ratio * p1_null
    variance = (
        p2_null * (1.0 - p2_null) / v2.trials
        + ratio * ratio * p1_null * (1.0 - p1_null) / v1.trials
    )
    return v2.events / v2.trials - ratio * v1.events / v1.trials, max(variance, 0.0)


def pooled_rate(v2: Counts, v1: Counts) -> float:
    """Both cohorts' events over both cohorts' trials (0 without trials)."""
    trials = v2.trials + v1.trials
    return (v2.events + v1.events) / trials if trials > 0 else 0.0
