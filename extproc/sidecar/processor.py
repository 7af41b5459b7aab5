"""The ext_proc stream handler: thin glue between Envoy's messages and the core.

One Envoy HTTP request = one ``Process`` stream. For the request-headers
message we decide and answer with the cohort; any other message gets a
harmless "continue". Envoy resets the stream when the request ends, so a
cancelled stream is normal and not an error.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Protocol

import grpc

from extproc.core.decide import Decider
from extproc.core.model import Cohort, Decision, Reason
from extproc.sidecar import wire
from extproc.sidecar.observe import Carrier, DecisionObserver
from extproc.sidecar.snapshot import Snapshot

log = logging.getLogger("extproc.processor")

#: Bound on cached serialized responses (decisions repeat: cohort x rule x bucket).
_CACHE_LIMIT = 32768


class SnapshotSource(Protocol):
    """What the handler needs from the rules holder: the current snapshot."""

    current: Snapshot | None


class CohortProcessor:
    """Answers ext_proc streams from the snapshot current at each message."""

    def __init__(self, rules: SnapshotSource, observer: DecisionObserver) -> None:
        self._rules = rules
        self._observer = observer
        self._cache: dict[Decision, bytes] = {}
        self._wanted: tuple[object, frozenset[str]] = (None, frozenset())

    def handle(self, data: bytes, carrier: Carrier | None = None) -> bytes | None:
        """Answer one serialized ProcessingRequest (None: the message needs no answer).

        Raises ``wire.BadMessage`` (counted) for bytes that are not one; the
        server turns that into INVALID_ARGUMENT for this stream only.
        """
        try:
            request = wire.parse_request(data)
        except wire.BadMessage:
            self._observer.metrics.record_stream_error("bad_message")
            raise
        if request.HasField("request_headers"):
            return self.on_request_headers(request, carrier)
        return self.on_other_phase(request)

    def on_other_phase(self, request: wire.ProcessingRequest) -> bytes | None:
        """Any message but the request headers (a config that sends more): let it pass."""
        return wire.pass_through(request)

    async def process(
        self, messages: AsyncIterator[bytes], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        """The Process RPC for the grpc.aio server model (raw bytes in and out)."""
        # Envoy puts its trace context in the stream's gRPC metadata.
        carrier = context.invocation_metadata() if self._observer.tracer.enabled else None
        async for data in messages:
            try:
                answer = self.handle(data, carrier)
            except wire.BadMessage as exc:
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT, f"not a ProcessingRequest: {exc}"
                )
                return
            if answer is not None:
                yield answer

    def on_request_headers(
        self, request: wire.ProcessingRequest, carrier: Carrier | None = None
    ) -> bytes:
        """Decide one request; never raises: an internal failure answers v1."""
        start_ns = time.time_ns() if self._observer.needs_context else 0
        started = time.perf_counter()
        snapshot = self._rules.current
        headers: dict[str, str] = {}
        flag_key = ""
        try:
            if snapshot is None:
                decision = Decision(Cohort.V1, Reason.ERROR, "no_rules", -1, None, "")
            else:
                decider = snapshot.decider
                flag_key = decider.rules.name
                headers = wire.read_headers(
                    request.request_headers.headers.headers, self._wanted_headers(decider)
                )
                decision = decider.decide(headers)
            answer = self._answer(decision)
        except Exception:  # the request must still be served: v1, counted, logged
            log.exception("decision failed; answering v1")
            self._observer.metrics.record_stream_error("internal")
            decision = Decision(Cohort.V1, Reason.ERROR, "error", -1, None, "")
            answer = self._answer(decision)
        seconds = time.perf_counter() - started
        self._observer.decided(decision, flag_key, headers, carrier, start_ns, seconds)
        return answer

    def _wanted_headers(self, decider: Decider) -> frozenset[str]:
        """The headers to extract: the decider's plus the observer's (cached per snapshot)."""
        owner, names = self._wanted
        if owner is not decider:
            names = decider.header_names | self._observer.extra_headers
            self._wanted = (decider, names)
        return names

    def _answer(self, decision: Decision) -> bytes:
        answer = self._cache.get(decision)
        if answer is None:
            answer = wire.decision_response(decision)
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[decision] = answer
        return answer
