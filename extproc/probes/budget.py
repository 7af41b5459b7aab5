"""A CPU budget for scoring, pure: a bucket of CPU seconds refilled at ``cores`` per second.

Scoring costs real CPU (DNSMOS and pocketsphinx take a good fraction of a second per second
of audio), so the probe process never scores more than its share of a core: before a round
the runner asks :meth:`CpuBudget.allows`; after it, :meth:`CpuBudget.spend` debits the CPU
seconds the scorer reported. Refill is ``cores`` CPU seconds per wall second, capped at
``burst``. A round that would start in debt is dropped (and counted by the runner), so an
expensive scorer slows the probe rate down instead of eating the machine. Time comes in as a
monotonic ``now``: no clock in here.
"""

from __future__ import annotations


class CpuBudget:
    def __init__(self, cores: float, burst: float, now: float) -> None:
        """``cores``: CPU seconds per wall second (0.5 = half a core); ``burst``: the most
        CPU seconds saved up while idle. ValueError unless both are > 0."""
        if not cores > 0 or not burst > 0:
            raise ValueError(f"CPU budget {cores} cores, burst {burst}s: both must be > 0")
        self.cores = cores
        self.burst = burst
        self._balance = burst
        self._at = now

    def balance(self, now: float) -> float:
        """CPU seconds available at ``now`` (negative while in debt)."""
        self._refill(now)
        return self._balance

    def allows(self, now: float) -> bool:
        """True if a new round may start: the budget is not in debt."""
        return self.balance(now) > 0

    def spend(self, cpu_seconds: float, now: float) -> None:
        """Debit what a round cost (it may go into debt: rounds are not cut short)."""
        self._refill(now)
        self._balance -= max(cpu_seconds, 0.0)

    def _refill(self, now: float) -> None:
        if now > self._at:
            self._balance = min(self.burst, self._balance + (now - self._at) * self.cores)
            self._at = now
