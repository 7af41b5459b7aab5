"""Bounded, jittered exponential backoff for reconnecting to etcd.

The delays grow ``initial * factor**n`` up to ``cap``; each is drawn uniformly from its
upper half, so that a fleet of sidecars that lost etcd together does not return in step.
"""

from __future__ import annotations

import random


class Backoff:
    def __init__(
        self,
        initial: float = 0.1,
        cap: float = 2.0,
        factor: float = 2.0,
        rng: random.Random | None = None,
    ) -> None:
        if not 0 < initial <= cap or factor < 1:
            raise ValueError(f"bad backoff: initial {initial}, cap {cap}, factor {factor}")
        self.initial, self.cap, self.factor = initial, cap, factor
        self._rng = rng or random.Random()
        self._next = initial

    def delay(self) -> float:
        """The next delay in seconds (within [d/2, d], d <= cap), then grow d."""
        ceiling = self._next
        self._next = min(self._next * self.factor, self.cap)
        return self._rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        """After a success: start again from ``initial``."""
        self._next = self.initial
