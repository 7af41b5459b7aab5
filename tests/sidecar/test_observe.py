"""The observer counts decisions only when metrics are on (``--metrics ''`` turns both off)."""

from __future__ import annotations

from extproc.core.model import Cohort, Decision, Reason
from extproc.sidecar.observe import DecisionObserver
from extproc.telemetry.metrics import Metrics

DECISION = Decision(Cohort.V2, Reason.SPLIT, "default", 12, 1000, "v1", "x-user-id")


def _count(metrics: Metrics) -> float:
    value = metrics.registry.get_sample_value(
        "tts_canary_decisions_total", {"cohort": "v2", "reason": "split", "rule": "default"}
    )
    return value or 0.0


def test_decisions_are_counted_with_metrics_on_and_not_with_metrics_off() -> None:
    on, off = Metrics(), Metrics()
    for metrics, record in ((on, True), (off, False)):
        observer = DecisionObserver(metrics, record_decisions=record)
        for _ in range(3):
            observer.decided(DECISION, "rollout", {"x-user-id": "u"}, None, 0, 1e-5)
    assert _count(on) == 3 and _count(off) == 0
