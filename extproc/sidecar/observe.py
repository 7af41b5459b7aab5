"""What happens after a decision besides the answer: metrics, span, decision log.

The processor calls ``DecisionObserver.decided`` once per decision. Raw user ids
stop here: only the keyed hash from ``IdHasher`` goes to the span and the log,
and metrics never see the key at all.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from extproc.core.model import Decision
from extproc.telemetry.decision_log import DecisionLog
from extproc.telemetry.metrics import Metrics
from extproc.telemetry.privacy import IdHasher
from extproc.telemetry.tracing import Carrier, DecisionTracer, traceparent_of

TRACE_HEADERS = frozenset({"traceparent"})


class DecisionObserver:
    """Records each decision; cheap when tracing and the decision log are off."""

    def __init__(
        self,
        metrics: Metrics,
        tracer: DecisionTracer | None = None,
        hasher: IdHasher | None = None,
        decision_log: DecisionLog | None = None,
        record_decisions: bool = True,
    ) -> None:
        self.metrics = metrics
        #: False when metrics are off (``--metrics ''``): decisions are not counted.
        self.record_decisions = record_decisions
        self.tracer = tracer or DecisionTracer()
        self.decision_log = decision_log or DecisionLog(0.0)
        self.hasher = hasher or IdHasher.from_env()
        self.needs_context = self.tracer.enabled or self.decision_log.rate > 0
        #: Extra request headers to read: the trace context, when tracing.
        self.extra_headers = TRACE_HEADERS if self.tracer.enabled else frozenset()

    def decided(
        self,
        decision: Decision,
        flag_key: str,
        headers: Mapping[str, str],
        carrier: Carrier | None,
        start_ns: int,
        seconds: float,
    ) -> None:
        """Record one decision taken at wall-clock ``start_ns`` in ``seconds``."""
        if self.record_decisions:
            self.metrics.record_decision(decision, seconds)
        if not self.needs_context:
            return
        key = headers.get(decision.key_source) if decision.key_source else None
        context_id = self.hasher.hash(key) if key is not None else None
        if self.tracer.enabled:
            # Envoy's context from the stream metadata, else the request's own header.
            traceparent = (traceparent_of(carrier) if carrier else None) or headers.get(
                "traceparent"
            )
            end_ns = time.time_ns()
            self.tracer.record(
                decision, flag_key, context_id, traceparent, start_ns, max(end_ns, start_ns)
            )
        self.decision_log.maybe_write(decision, flag_key, context_id)
