"""The stream handler with live sampling: :class:`CohortProcessor` plus the sampled path.

Used only when sampling is on (``EXTPROC_SAMPLE_RATE`` > 0); with it off the sidecar runs the
plain :class:`CohortProcessor`, so an unsampled request's path is today's, unchanged. With it
on, an unsampled request costs one draw of the RNG more. A drawn request is sampled only if
the feed admits it (:meth:`LiveFeed.admit`: room in the scorer's queue, its CPU budget not in
debt, a token of the cohort's rate cap); a skipped one is answered like an unsampled one, so
Envoy sends it no body. A sampled request's header answer
carries a ``mode_override`` (both bodies, BUFFERED_PARTIAL) and a token in the dynamic
metadata; Envoy sends the token back with each body message. Every body message is answered
at once with "continue unchanged": scoring never holds a request. The request body (the text)
waits under its token for the answer's body (bounded: the oldest is forgotten), then both go
to the feed.
"""

from __future__ import annotations

import logging
import random

from extproc.core.model import Decision
from extproc.live.feed import TEXT_CAP, LiveFeed
from extproc.live.sampler import Sampler
from extproc.sidecar import wire
from extproc.sidecar.observe import DecisionObserver
from extproc.sidecar.processor import CohortProcessor, SnapshotSource

log = logging.getLogger("extproc.live")

#: Sampled requests whose text waits for their answer (more: the oldest is forgotten).
PENDING_LIMIT = 256


class SamplingProcessor(CohortProcessor):
    def __init__(
        self,
        rules: SnapshotSource,
        observer: DecisionObserver,
        sampler: Sampler,
        feed: LiveFeed,
    ) -> None:
        super().__init__(rules, observer)
        # the sampler's table and draw, inlined in _answer: it runs for every request
        self._rates = sampler.rates
        self._draw = sampler.draw
        self._feed = feed
        self._texts: dict[str, bytes] = {}

    def on_other_phase(self, request: wire.ProcessingRequest) -> bytes | None:
        """A body message of a sampled request: copy it for the feed, answer "continue"."""
        phase = request.WhichOneof("request")
        if phase == "request_body" or phase == "response_body":
            try:
                self._take(request, phase)
            except Exception:  # a copy gone wrong must never cost the request: log, go on
                log.exception("live sampling: could not take a %s", phase)
                self._feed.metrics.record_failure("error")
        return wire.pass_through(request)

    def _answer(self, decision: Decision) -> bytes:
        rate = self._rates.get(decision.cohort)  # a Cohort is a str: its name is the key
        if rate is None or self._draw() >= rate:  # Sampler.sampled, inlined
            return CohortProcessor._answer(self, decision)
        cohort = decision.cohort.value
        if not self._feed.admit(cohort):
            return CohortProcessor._answer(self, decision)
        self._feed.metrics.record_sampled(cohort)
        return wire.sampled_response(decision, f"{random.getrandbits(64):016x}")

    def _take(self, request: wire.ProcessingRequest, phase: str) -> None:
        sample = wire.sample_of(request)
        if sample is None:  # a body nobody asked for (a config that sends bodies): ignore
            return
        token, cohort = sample
        if phase == "request_body":
            if len(self._texts) >= PENDING_LIMIT:
                del self._texts[next(iter(self._texts))]
            self._texts[token] = request.request_body.body[:TEXT_CAP]
            return
        body = request.response_body
        self._feed.offer(cohort, self._texts.pop(token, b""), body.body, body.end_of_stream)
