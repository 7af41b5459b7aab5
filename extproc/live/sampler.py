"""Which requests are sampled: a fraction per cohort, decided per request by a fast RNG.

Never by user id: a user is not "the sampled one" (their requests are sampled at the same
rate as anyone's, independently), and nothing about the user enters the choice. The RNG is
``random.random`` (Mersenne Twister, not a secret: the choice protects nothing, it only
spreads the cost); tests inject their own.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable


class Sampler:
    def __init__(
        self, rates: Iterable[tuple[str, float]], draw: Callable[[], float] = random.random
    ) -> None:
        """``rates``: (cohort, fraction 0..1) pairs; a cohort not named is never sampled."""
        self.rates = {cohort: rate for cohort, rate in rates if rate > 0}
        self.draw = draw

    def sampled(self, cohort: str) -> bool:
        """True for about ``rate`` of the calls for ``cohort`` (always at 1, never at 0)."""
        rate = self.rates.get(cohort)
        return rate is not None and self.draw() < rate
