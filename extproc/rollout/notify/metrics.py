"""Every metric of the notifications, declared once, recorded through helpers.

They live in the controller process (``extproc rollout controller --metrics ADDR``), not
the sidecar, so they are declared here and not in extproc/telemetry/metrics.py: the
rollout layer may not import telemetry (pyproject's import-linter layers). Labels are
bounded: ``sink`` is a name from the policy, ``outcome`` one of OUTCOMES,
``kind`` one of config.EVENT_KINDS.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from extproc.rollout.notify.config import EVENT_KINDS

_DELAY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
OUTCOMES = ("delivered", "failed", "rejected", "dropped", "abandoned")
NAMES = (
    "tts_canary_notification_events_total",
    "tts_canary_notifications_total",
    "tts_canary_notification_retries_total",
    "tts_canary_notification_queue_depth",
    "tts_canary_notification_delay_seconds",
)


class NotifyMetrics:
    """The notifier's metrics in their own registry (tests make a fresh one each)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.events = Counter(
            "tts_canary_notification_events",
            "Transitions announced by this controller replica (once per revision), by kind.",
            ("kind",),
            registry=r,
        )
        self.outcomes = Counter(
            "tts_canary_notifications",
            "Notifications by sink and outcome (delivered, failed after every attempt, "
            "rejected by a 4xx, dropped from a full queue, abandoned at shutdown).",
            ("sink", "outcome"),
            registry=r,
        )
        self.retries = Counter(
            "tts_canary_notification_retries",
            "Attempts that failed and were retried after a back-off, by sink.",
            ("sink",),
            registry=r,
        )
        self.queue = Gauge(
            "tts_canary_notification_queue_depth",
            "Events waiting for delivery, by sink.",
            ("sink",),
            registry=r,
        )
        self.delay = Histogram(
            "tts_canary_notification_delay_seconds",
            "From the transition to its delivery (2xx), by sink.",
            ("sink",),
            buckets=_DELAY_BUCKETS,
            registry=r,
        )
        for kind in EVENT_KINDS:
            self.events.labels(kind)

    def add_sink(self, sink: str) -> None:
        """Create the sink's series at zero, so that rates exist before the first event."""
        for outcome in OUTCOMES:
            self.outcomes.labels(sink, outcome)
        self.retries.labels(sink)
        self.queue.labels(sink).set(0)

    def record_event(self, kind: str) -> None:
        self.events.labels(kind).inc()

    def record_outcome(self, sink: str, outcome: str) -> None:
        self.outcomes.labels(sink, outcome).inc()

    def record_retry(self, sink: str) -> None:
        self.retries.labels(sink).inc()

    def record_queue(self, sink: str, depth: int) -> None:
        self.queue.labels(sink).set(depth)

    def record_delay(self, sink: str, seconds: float) -> None:
        self.delay.labels(sink).observe(seconds)

    def value(self, name: str, **labels: str) -> float:
        """One sample's value (0 if absent): for tests and the admin status."""
        found = self.registry.get_sample_value(name, labels)
        return found if found is not None else 0.0
