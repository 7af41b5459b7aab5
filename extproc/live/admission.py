"""Admission of a drawn sample at decision time: pure, time comes in as ``now``.

A sampled request costs the data path its two body messages (Envoy buffers and sends each,
the sidecar parses and answers each) and the scoring side a hand-off, whether or not its
audio is scored in the end. So a drawn request is *admitted* (its bodies asked for) only
when the scoring side can take it (the feed checks its queue and CPU budget) and its cohort's
:class:`RateCap` has a token; otherwise it is answered like an unsampled request and counted
as skipped. The cap bounds that data-path cost by samples per second, whatever the traffic.

Default cap: :func:`default_cap`, the CPU budget divided by :data:`MIN_SAMPLE_CPU_SECONDS`,
a floor of what scoring one real answer costs (DNSMOS and the ASR read-back take 0.1-1.2 s of
CPU per second of audio, docs/audio-quality.md): more samples than that per second could not
be scored within the budget anyway, they would be dropped after their bodies were paid for.
"""

from __future__ import annotations

import math

#: CPU seconds one real sample is assumed to cost at least (half a second of speech, the
#: cheapest scorer settings); the default cap is the budget over this.
MIN_SAMPLE_CPU_SECONDS = 0.05


def default_cap(cpu_cores: float) -> float:
    """Samples per second per cohort the default cap admits for a budget of ``cpu_cores``."""
    return cpu_cores / MIN_SAMPLE_CPU_SECONDS


class RateCap:
    """A token bucket: on average at most ``per_second`` admissions per second, in bursts of
    at most ``max(1, per_second)``; ``math.inf`` admits everything."""

    def __init__(self, per_second: float, now: float) -> None:
        if not per_second > 0:
            raise ValueError(f"a rate cap of {per_second} samples per second: must be > 0")
        self.per_second = per_second
        self.burst = max(1.0, per_second)
        self._tokens = self.burst
        self._at = now

    def take(self, now: float) -> bool:
        """True (a token taken) if one more admission fits at ``now``."""
        if math.isinf(self.per_second):
            return True
        if now > self._at:
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.per_second)
            self._at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False
