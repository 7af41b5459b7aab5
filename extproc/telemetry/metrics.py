"""Every Prometheus metric of the sidecar, declared once, recorded through helpers.

Labels are bounded by construction: cohort (2), reason (5), rule (names from the
rules file, validated to a short pattern), outcome (3), kind (a few). No user
id, bucket or other per-request value ever becomes a label.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from extproc.core.bucket import BUCKETS
from extproc.core.model import Decision, Rules
from extproc.rollout.state import RolloutState

_LATENCY_BUCKETS = (25e-6, 50e-6, 100e-6, 200e-6, 400e-6, 800e-6, 1.6e-3, 5e-3, 0.02, 0.1)


class Metrics:
    """The sidecar's metrics in their own registry (tests make a fresh one each)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.decisions = Counter(
            "tts_canary_decisions_total",
            "Cohort decisions, by cohort, reason and matched rule.",
            ("cohort", "reason", "rule"),
            registry=r,
        )
        self.decision_seconds = Histogram(
            "tts_canary_decision_duration_seconds",
            "Time to decide one request, from headers in to response bytes out.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.stream_errors = Counter(
            "tts_canary_stream_errors_total",
            "Process streams that ended abnormally, by kind (cancelled is normal and not counted).",
            ("kind",),
            registry=r,
        )
        self.reloads = Counter(
            "tts_canary_rules_reloads_total",
            "Rules reload attempts by outcome (loaded, unchanged, failed).",
            ("outcome",),
            registry=r,
        )
        self.rules_info = Gauge(
            "tts_canary_rules_info",
            "1 for the rules version currently serving.",
            ("rollout", "version"),
            registry=r,
        )
        self.rules_loaded_at = Gauge(
            "tts_canary_rules_loaded_timestamp_seconds",
            "Unix time the serving rules were loaded.",
            registry=r,
        )
        self.default_share = Gauge(
            "tts_canary_default_share_ratio",
            "Serving v2 share of the default population (0..1), rollout state applied.",
            registry=r,
        )
        self.state_reloads = Counter(
            "tts_canary_rollout_state_reloads_total",
            "Rollout state updates (file reads or etcd watch events) by outcome.",
            ("outcome",),
            registry=r,
        )
        self.rollout_revision = Gauge(
            "tts_canary_rollout_revision",
            "Revision of the rollout state this sidecar applies.",
            registry=r,
        )
        self.rollout_phase = Gauge(
            "tts_canary_rollout_phase",
            "1 for the rollout phase this sidecar applies.",
            ("phase",),
            registry=r,
        )
        for outcome in ("loaded", "unchanged", "failed"):
            self.reloads.labels(outcome)
        for outcome in ("loaded", "failed"):
            self.state_reloads.labels(outcome)
        for kind in ("bad_message", "internal"):
            self.stream_errors.labels(kind)
        self._decision_children: dict[tuple[object, ...], Any] = {}

    def record_decision(self, decision: Decision, seconds: float) -> None:
        labels = (decision.cohort, decision.reason, decision.rule)
        child = self._decision_children.get(labels)
        if child is None:  # label sets are few and bounded (see module docstring)
            child = self.decisions.labels(
                decision.cohort.value, decision.reason.value, decision.rule
            )
            self._decision_children[labels] = child
        child.inc()
        self.decision_seconds.observe(seconds)

    def record_stream_error(self, kind: str) -> None:
        self.stream_errors.labels(kind).inc()

    def record_reload(self, outcome: str) -> None:
        self.reloads.labels(outcome).inc()

    def record_state_reload(self, outcome: str) -> None:
        self.state_reloads.labels(outcome).inc()

    def record_rules(
        self, rules: Rules, loaded_at: float, state: RolloutState | None = None
    ) -> None:
        """The serving (effective) rules: file rules with the rollout state applied."""
        self.rules_info.clear()
        self.rules_info.labels(rules.name, rules.version).set(1)
        self.rules_loaded_at.set(loaded_at)
        self.default_share.set(0.0 if rules.kill_switch else rules.share / BUCKETS)
        if state is not None:
            self.rollout_revision.set(state.revision)
            self.rollout_phase.clear()
            self.rollout_phase.labels(state.phase.value).set(1)


class SupervisorMetrics:
    """The supervisor's own metrics (``extproc serve --workers N``), beside the workers'.

    Its /metrics serves these plus every worker's sidecar metrics with a ``worker`` label
    (see extproc/sidecar/workers/metrics.py).
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.workers = Gauge(
            "tts_canary_workers", "Worker processes configured (--workers).", registry=r
        )
        self.workers_up = Gauge(
            "tts_canary_workers_up",
            "Workers whose metrics answered this scrape (the others' samples are missing).",
            registry=r,
        )
        self.restarts = Counter(
            "tts_canary_worker_restarts_total",
            "Workers started again after they exited unexpectedly.",
            registry=r,
        )

    def record_workers(self, configured: int) -> None:
        self.workers.set(configured)

    def record_scrape(self, answered: int) -> None:
        self.workers_up.set(answered)

    def record_restart(self) -> None:
        self.restarts.inc()
