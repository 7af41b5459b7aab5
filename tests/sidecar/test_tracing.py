"""One span per decision, exported over OTLP/gRPC to a real receiver.

The parent comes from the stream's gRPC metadata (how Envoy passes its trace
context), else from the request's ``traceparent`` header, else a new root.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.trace import SpanKind

from extproc.core.decide import decide
from extproc.core.model import Rules
from extproc.telemetry.privacy import IdHasher
from tests.support.otlp_receiver import OtlpReceiver, ReceivedSpan

from .harness import Sidecar, cohort_of, headers_request, user_request

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT}-01"
SECRET = "test-hash-key"


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as running:
        yield running


@pytest.fixture
def traced(
    receiver: OtlpReceiver, rules_file: Path, monkeypatch: pytest.MonkeyPatch, server_model: str
) -> Iterator[Sidecar]:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "tts-canary-test")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    monkeypatch.setenv("EXTPROC_ID_HASH_KEY", SECRET)
    sidecar = Sidecar(rules_file, server=server_model)
    yield sidecar
    sidecar.stop()


def decision_spans(spans: list[ReceivedSpan]) -> list[ReceivedSpan]:
    return [s for s in spans if s.service == "tts-canary-test"]


def test_span_is_a_child_of_envoys_span_from_grpc_metadata(
    traced: Sidecar, receiver: OtlpReceiver, rules: Rules
) -> None:
    (response,) = traced.stub.Process(
        iter([user_request("alice")]), metadata=[("traceparent", TRACEPARENT)], timeout=10
    )
    (span,) = receiver.wait_for(lambda s: len(decision_spans(s)) == 1, "one decision span")
    want = decide(rules, {"x-user-id": "alice"})
    assert span.trace_id == TRACE_ID and span.parent_span_id == PARENT
    assert span.kind == SpanKind.SERVER.value + 1  # OTLP enum: SERVER = 2
    assert span.name == "envoy.service.ext_proc.v3.ExternalProcessor/Process"
    assert span.attributes["feature_flag.key"] == rules.name
    assert (
        span.attributes["feature_flag.result.variant"] == want.cohort.value == cohort_of(response)
    )
    assert span.attributes["feature_flag.result.reason"] == "split"
    assert span.attributes["feature_flag.version"] == rules.version
    assert span.attributes["feature_flag.context.id"] == IdHasher(SECRET.encode()).hash("alice")
    assert span.attributes["tts_canary.rule"] == "default"
    assert span.attributes["tts_canary.bucket"] == want.bucket


@pytest.mark.parametrize(
    ("user", "variant", "reason", "rule"),
    [
        ("qa-001", "v2", "targeting_match", "force.v2"),
        ("vip-42", "v1", "targeting_match", "force.v1"),
        (None, "v2", "default", "missing_key"),  # the test rules say when_missing: v2
    ],
)
def test_forced_and_missing_id_attributes(
    traced: Sidecar,
    receiver: OtlpReceiver,
    user: str | None,
    variant: str,
    reason: str,
    rule: str,
) -> None:
    request = user_request(user) if user else headers_request([("x-region", b"us")])
    list(traced.stub.Process(iter([request]), metadata=[("traceparent", TRACEPARENT)], timeout=10))
    (span,) = receiver.wait_for(lambda s: len(decision_spans(s)) == 1, "one decision span")
    got = span.attributes
    assert (got["feature_flag.result.variant"], got["feature_flag.result.reason"]) == (
        variant,
        reason,
    )
    assert got["tts_canary.rule"] == rule
    assert "tts_canary.bucket" not in got
    assert ("feature_flag.context.id" in got) == (user is not None)


def test_traceparent_request_header_is_the_fallback_parent(
    traced: Sidecar, receiver: OtlpReceiver
) -> None:
    request = headers_request([("x-user-id", b"bob"), ("traceparent", TRACEPARENT.encode())])
    traced.decide(request)
    (span,) = receiver.wait_for(lambda s: len(decision_spans(s)) == 1, "one decision span")
    assert (span.trace_id, span.parent_span_id) == (TRACE_ID, PARENT)


def test_no_context_means_a_new_root(traced: Sidecar, receiver: OtlpReceiver) -> None:
    traced.decide(user_request("carol"))
    (span,) = receiver.wait_for(lambda s: len(decision_spans(s)) == 1, "one decision span")
    assert span.parent_span_id == "" and span.trace_id != TRACE_ID


def test_raw_user_ids_never_leave_in_spans(traced: Sidecar, receiver: OtlpReceiver) -> None:
    users = [f"secret-user-{i}" for i in range(50)]
    for user in users:
        traced.decide(user_request(user))
    receiver.wait_for(lambda s: len(decision_spans(s)) == 50, "50 decision spans")
    exported = b"".join(receiver.raw)
    assert not [u for u in users if u.encode() in exported]


def test_a_dead_receiver_does_not_break_decisions(traced: Sidecar, receiver: OtlpReceiver) -> None:
    receiver.stop()
    for i in range(300):
        assert cohort_of(traced.decide(user_request(f"u{i}"))) in ("v1", "v2")
    assert traced.serving()


def test_decisions_never_wait_for_a_blocked_export(
    rules_file: Path, monkeypatch: pytest.MonkeyPatch, server_model: str
) -> None:
    """While the collector holds an export call open, 200 decisions still complete:
    a causal check (the export has not returned), not a timing one."""
    with OtlpReceiver(delay=60.0) as slow:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", slow.endpoint)
        monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "10")
        monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "1")
        sidecar = Sidecar(rules_file, server=server_model)
        try:
            sidecar.decide(user_request("first"))
            deadline = time.monotonic() + 20
            while slow.exports_in_flight == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert slow.exports_in_flight == 1, "the first export never reached the collector"
            for i in range(200):
                assert cohort_of(sidecar.decide(user_request(f"u{i}"))) in ("v1", "v2")
            assert slow.exports_in_flight == 1 and not slow.snapshot()
        finally:
            sidecar.stop()  # bounded: the tracer gives up flushing after its deadline
