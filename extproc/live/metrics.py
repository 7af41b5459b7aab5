"""Every metric of live sampling, declared here (prefix ``tts_quality_live_``).

Per cohort: requests sampled (asked for their bodies), drawn requests skipped at decision
time by reason (the scorer's queue full, its CPU budget in debt, the cohort's rate cap: their
bodies were never asked for), samples scored by outcome (valid / invalid audio), and one
histogram per figure. For the feed: samples dropped by reason (queue full, over the CPU
budget), scorer failures by reason, scorer CPU seconds, whether the scorer is warmed up.
Label values are closed sets (cohorts, outcomes, reasons): no text, no audio, no user data.
Registered in the sidecar's registry, so they are on its ``/metrics``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

PREFIX = "tts_quality_live_"
COHORTS = ("v1", "v2")
OUTCOMES = ("valid", "invalid")
DROP_REASONS = ("queue_full", "over_budget")
SKIP_REASONS = ("queue_full", "over_budget", "rate_cap")
FAILURE_REASONS = ("crash", "timeout", "error")
SCORE_BUCKETS = (1.0, 1.5, 2.0, 2.25, 2.5, 2.75, 3.0, 3.25, 3.5, 3.75, 4.0, 4.5, 5.0)
ERROR_BUCKETS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.5, 2.0)
RATIO_BUCKETS = (0.0, 0.001, 0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 0.9, 0.95, 1.0)
PER_CHAR_BUCKETS = (0.0, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5)
# figure key of the scorer's answer -> (metric suffix, buckets, help)
FIGURES: Mapping[str, tuple[str, tuple[float, ...], str]] = {
    "mos": ("mos", SCORE_BUCKETS, "DNSMOS P.808 MOS of sampled answers"),
    "ovrl": ("dnsmos_ovrl", SCORE_BUCKETS, "DNSMOS P.835 OVRL of sampled answers"),
    "wer": ("wer", ERROR_BUCKETS, "ASR read-back word error rate against the request text"),
    "silence_ratio": ("silence_ratio", RATIO_BUCKETS, "share of silent frames"),
    "clipping_ratio": ("clipping_ratio", RATIO_BUCKETS, "share of clipped samples"),
    "seconds_per_char": (
        "seconds_per_char",
        PER_CHAR_BUCKETS,
        "audio seconds per text character (whole answers only, not prefixes)",
    ),
}


class LiveMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        sampled = Counter(
            PREFIX + "sampled", "requests asked for their bodies", ["cohort"], registry=r
        )
        self._sampled = {c: sampled.labels(c) for c in COHORTS}
        skipped = Counter(
            PREFIX + "skipped",
            "requests drawn for sampling but not asked for their bodies, by reason",
            ["cohort", "reason"],
            registry=r,
        )
        self._skipped = {(c, why): skipped.labels(c, why) for c in COHORTS for why in SKIP_REASONS}
        self.scored = Counter(
            PREFIX + "scored",
            "sampled answers scored, by outcome (invalid: not usable audio)",
            ["cohort", "outcome"],
            registry=r,
        )
        self.dropped = Counter(
            PREFIX + "dropped", "samples dropped unscored, by reason", ["reason"], registry=r
        )
        self.failures = Counter(
            PREFIX + "scorer_failures", "scorer crashes, timeouts, errors", ["reason"], registry=r
        )
        self.cpu = Counter(PREFIX + "scorer_cpu_seconds", "CPU seconds spent scoring", registry=r)
        self.ready = Gauge(
            PREFIX + "scorer_ready", "1 once the scoring child has loaded its models", registry=r
        )
        self.histograms = {
            key: Histogram(PREFIX + suffix, text, ["cohort"], buckets=buckets, registry=r)
            for key, (suffix, buckets, text) in FIGURES.items()
        }
        for cohort in COHORTS:
            for outcome in OUTCOMES:
                self.scored.labels(cohort, outcome)
            for histogram in self.histograms.values():
                histogram.labels(cohort)
        for reason in DROP_REASONS:
            self.dropped.labels(reason)
        for reason in FAILURE_REASONS:
            self.failures.labels(reason)

    def record_sampled(self, cohort: str) -> None:
        child = self._sampled.get(cohort)
        if child is not None:
            child.inc()

    def record_skipped(self, cohort: str, reason: str) -> None:
        child = self._skipped.get((cohort, reason))
        if child is not None:
            child.inc()

    def record_dropped(self, reason: str) -> None:
        self.dropped.labels(reason).inc()

    def record_failure(self, reason: str) -> None:
        self.failures.labels(reason).inc()

    def record_scored(
        self, cohort: str, figures: Mapping[str, Any], cpu_seconds: float, whole: bool
    ) -> None:
        """One scored answer: its figures into the cohort's histograms (None = not measured)."""
        self.cpu.inc(max(cpu_seconds, 0.0))
        if cohort not in COHORTS:
            return
        valid = bool(figures.get("valid"))
        self.scored.labels(cohort, "valid" if valid else "invalid").inc()
        if not valid:
            return
        for key, histogram in self.histograms.items():
            value = figures.get(key)
            if key == "seconds_per_char" and not whole:
                continue
            if isinstance(value, int | float) and not isinstance(value, bool):
                histogram.labels(cohort).observe(float(value))
