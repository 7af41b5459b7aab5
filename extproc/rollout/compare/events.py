"""An always-valid test for rare events (5xx), exact up to the Poisson approximation.

Between two looks, v2 served ``n2`` requests with ``x2`` errors and v1 ``n1`` with ``x1``.
Given the ``x1 + x2`` errors of the batch, each is v2's with probability
``pi = r n2 / (n1 + r n2)`` when v2's error rate is exactly ``r`` times v1's (errors rare,
so each cohort's errors are close to Poisson). Under "v2 is worse by more than the margin"
that probability is larger; the likelihood ratio of the batch's labels at a larger odds
``exp(shift) pi / (1 - pi)`` against ``pi`` is a martingale factor under the null boundary
(a supermartingale below it), whatever the batch sizes. Averaging the running products over
a fixed set of shifts (a discrete mixture prior with equal weights) keeps it a nonnegative
martingale, so Ville's inequality bounds the false alarms over every look of the stage by
``alpha``, with no normal approximation: the events are counted, not approximated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from extproc.rollout.compare.rates import Counts

#: Odds ratios the mixture puts its weight on (v2's error odds against the margin's).
ODDS_RATIOS = (1.1, 1.25, 1.5, 2.0, 3.0, 5.0)
SHIFTS = tuple(math.log(r) for r in ODDS_RATIOS)
NONE_YET = Counts(0.0, 0.0)


@dataclass(frozen=True, slots=True)
class EventTest:
    """The running log likelihood ratio per shift, and the counts at the last look."""

    log_ratios: tuple[float, ...] = tuple(0.0 for _ in SHIFTS)
    v2: Counts = NONE_YET
    v1: Counts = NONE_YET

    def advance(self, v2: Counts, v1: Counts, ratio: float) -> EventTest:
        """After a look at the cumulative counts ``v2``, ``v1`` (since the stage began),
        testing "v2's rate is more than ``ratio`` times v1's"."""
        n2, n1 = v2.trials - self.v2.trials, v1.trials - self.v1.trials
        x2, x1 = v2.events - self.v2.events, v1.events - self.v1.events
        logs = self.log_ratios
        if n2 > 0 and n1 > 0 and x1 + x2 > 0 and min(x1, x2) >= 0:
            batch = batch_log_ratios(x2, n2, x1, n1, ratio)
            logs = tuple(a + b for a, b in zip(logs, batch, strict=True))
        return EventTest(logs, v2, v1)

    @property
    def log_ratio(self) -> float:
        """log of the mixture: the mean of the per-shift ratios."""
        return log_mean_exp(self.log_ratios)


def batch_log_ratios(x2: float, n2: float, x1: float, n1: float, ratio: float) -> list[float]:
    """One batch's log likelihood ratio for each shift (see the module docstring)."""
    pi = ratio * n2 / (n1 + ratio * n2)
    odds = pi / (1.0 - pi)
    out = []
    for shift in SHIFTS:
        alt = odds * math.exp(shift)
        pi_alt = alt / (1.0 + alt)
        out.append(x2 * math.log(pi_alt / pi) + x1 * math.log((1.0 - pi_alt) / (1.0 - pi)))
    return out


def log_mean_exp(values: tuple[float, ...]) -> float:
    top = max(values)
    return top + math.log(math.fsum(math.exp(v - top) for v in values) / len(values))
