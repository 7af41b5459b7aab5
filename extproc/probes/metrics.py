"""Every metric of the probe process, declared here behind ``record_*`` helpers.

Per cohort (v1, v2): one histogram per figure (MOS, DNSMOS SIG/BAK/OVRL, WER, CER, silence and
clipping ratios, seconds of audio per character, duration), probe outcomes and invalid audio
by reason. Per round: the paired difference of each signal (v2 - v1 on the same text; MOS as
v1 - v2, the drop) as a histogram (no ``_sum``: prometheus_client drops it for buckets below
zero) and the mean of the latest rounds as a gauge. The process itself: rounds dropped (over
budget, queue full), scorer failures, scorer CPU seconds. Label values are closed sets
(cohorts, outcomes, the scorers' invalid reasons, signal names): no text, no user data.
Own registry, no global state.
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from extproc.quality.figures import INVALID_REASONS

COHORTS = ("v1", "v2")
OUTCOMES = ("scored", "invalid", "http_error", "scorer_failed")
DROP_REASONS = ("over_budget", "queue_full")
FAILURE_REASONS = ("crash", "timeout", "error")
PREFIX = "tts_quality_"
RECENT_ROUNDS = 12  # the pair_difference_recent gauge: mean of this many latest rounds
SCORE_BUCKETS = (1.0, 1.5, 2.0, 2.25, 2.5, 2.75, 3.0, 3.25, 3.5, 3.75, 4.0, 4.5, 5.0)
ERROR_BUCKETS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.5, 2.0)
RATIO_BUCKETS = (0.0, 0.001, 0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 0.9, 0.95, 1.0)
DIFF_BUCKETS = (-2.0, -1.0, -0.5, -0.3, -0.2, -0.1, -0.05, 0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0)
PER_CHAR_BUCKETS = (0.0, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5)
DURATION_BUCKETS = (0.0, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 20.0, 30.0)
SCORING_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
# figure key of AudioFigures -> (metric suffix, buckets, help)
FIGURES: Mapping[str, tuple[str, tuple[float, ...], str]] = {
    "mos": ("mos", SCORE_BUCKETS, "DNSMOS P.808 MOS of probe answers"),
    "sig": ("dnsmos_sig", SCORE_BUCKETS, "DNSMOS P.835 SIG (speech quality)"),
    "bak": ("dnsmos_bak", SCORE_BUCKETS, "DNSMOS P.835 BAK (background noise)"),
    "ovrl": ("dnsmos_ovrl", SCORE_BUCKETS, "DNSMOS P.835 OVRL (overall)"),
    "wer": ("wer", ERROR_BUCKETS, "ASR read-back word error rate against the probe text"),
    "cer": ("cer", ERROR_BUCKETS, "ASR read-back character error rate"),
    "silence_ratio": ("silence_ratio", RATIO_BUCKETS, "share of silent frames"),
    "clipping_ratio": ("clipping_ratio", RATIO_BUCKETS, "share of clipped samples"),
    "seconds_per_char": ("seconds_per_char", PER_CHAR_BUCKETS, "audio seconds per text char"),
    "duration_s": ("audio_duration_seconds", DURATION_BUCKETS, "audio duration"),
}
# guard signal -> figure key (the paired differences exported per round)
PAIRED = {
    "mos": "mos",
    "asr_wer": "wer",
    "silence_ratio": "silence_ratio",
    "clipping_ratio": "clipping_ratio",
}


class ProbeMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.figures = {
            key: Histogram(PREFIX + name, text, ["cohort"], buckets=buckets, registry=r)
            for key, (name, buckets, text) in FIGURES.items()
        }
        self.pair_difference = Histogram(
            PREFIX + "pair_difference",
            "paired difference per round on the same text: v2 - v1 (mos: v1 - v2, the drop)",
            ["signal"],
            buckets=DIFF_BUCKETS,
            registry=r,
        )
        self.pair_recent = Gauge(
            PREFIX + "pair_difference_recent",
            f"mean paired difference of the last {RECENT_ROUNDS} rounds (same sign as "
            "pair_difference; what the alert rules read)",
            ["signal"],
            registry=r,
        )
        self._recent: dict[str, deque[float]] = {s: deque(maxlen=RECENT_ROUNDS) for s in PAIRED}
        self.probes = Counter(
            PREFIX + "probes",
            "probe answers by cohort and outcome (scored, invalid, http_error, scorer_failed)",
            ["cohort", "outcome"],
            registry=r,
        )
        self.invalid = Counter(
            PREFIX + "invalid_audio",
            "answers that are not valid audio",
            ["cohort", "reason"],
            registry=r,
        )
        self.rounds = Counter(PREFIX + "rounds", "probe rounds scored (v1 and v2)", registry=r)
        self.dropped = Counter(
            PREFIX + "dropped_rounds",
            "rounds not scored (over_budget, queue_full)",
            ["reason"],
            registry=r,
        )
        self.scorer_failures = Counter(
            PREFIX + "scorer_failures",
            "scorer crashes, timeouts and errors",
            ["reason"],
            registry=r,
        )
        self.scorer_cpu = Counter(
            PREFIX + "scorer_cpu_seconds", "CPU seconds the scorer process spent", registry=r
        )
        self.scoring = Histogram(
            PREFIX + "scoring_duration_seconds",
            "wall time to score one answer",
            buckets=SCORING_BUCKETS,
            registry=r,
        )

        self._initialize()

    def _initialize(self) -> None:
        """Create every labelled series at zero, so rates work from the first scrape (the
        recent-difference gauge appears with the first round: zero would mean "no gap")."""
        for cohort in COHORTS:
            for histogram in self.figures.values():
                histogram.labels(cohort)
            for outcome in OUTCOMES:
                self.probes.labels(cohort, outcome)
            for reason in INVALID_REASONS:
                self.invalid.labels(cohort, reason)
        for signal in PAIRED:
            self.pair_difference.labels(signal)
        for reason in DROP_REASONS:
            self.dropped.labels(reason)
        for reason in FAILURE_REASONS:
            self.scorer_failures.labels(reason)

    def record_answer(self, cohort: str, figures: Mapping[str, Any]) -> None:
        """One scored answer: its figures, or its invalid reason."""
        if not figures.get("valid"):
            self.probes.labels(cohort, "invalid").inc()
            self.invalid.labels(cohort, str(figures.get("invalid_reason") or "unknown")).inc()
            return
        self.probes.labels(cohort, "scored").inc()
        for key, histogram in self.figures.items():
            value = _number(figures.get(key))
            if value is not None:
                histogram.labels(cohort).observe(value)

    def record_failure(self, cohort: str, outcome: str) -> None:
        """An answer without figures: ``http_error`` (no 200) or ``scorer_failed``."""
        self.probes.labels(cohort, outcome).inc()

    def record_round(self, v1: Mapping[str, Any] | None, v2: Mapping[str, Any] | None) -> None:
        """A finished round: its paired differences where both sides have the figure."""
        self.rounds.inc()
        if not v1 or not v2 or not v1.get("valid") or not v2.get("valid"):
            return
        for signal, key in PAIRED.items():
            a, b = _number(v1.get(key)), _number(v2.get(key))
            if a is not None and b is not None:
                difference = a - b if signal == "mos" else b - a
                self.pair_difference.labels(signal).observe(difference)
                self._recent[signal].append(difference)
                self.pair_recent.labels(signal).set(statistics.fmean(self._recent[signal]))

    def record_scoring(self, wall_seconds: float, cpu_seconds: float) -> None:
        self.scoring.observe(wall_seconds)
        self.scorer_cpu.inc(max(cpu_seconds, 0.0))

    def record_dropped(self, reason: str) -> None:
        self.dropped.labels(reason).inc()

    def record_scorer_failure(self, reason: str) -> None:
        self.scorer_failures.labels(reason).inc()


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)
