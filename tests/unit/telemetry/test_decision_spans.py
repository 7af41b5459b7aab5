"""Decision spans encoded in batches off the hot path are the bytes the per-decision
encoder built, and the tracer queues plain records only for sampled decisions."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from extproc.core.model import Cohort, Decision, Reason
from extproc.telemetry import decision_spans as ds
from extproc.telemetry import otlp_spans
from extproc.telemetry.decision_spans import DecisionSpans, SpanRecord
from extproc.telemetry.otlp_spans import SpanEncoder, export_request, resource_bytes, scope_bytes
from extproc.telemetry.privacy import HASH_DIGITS
from extproc.telemetry.span_export import ENCODE_CHUNK, SpanBatcher
from extproc.telemetry.tracing import DecisionTracer

TRACE = bytes.fromhex("4bf92f3577b34da6a3ce929d0e0e4736")
PARENT = bytes.fromhex("00f067aa0ba902b7")


def per_span_reference(records: list[SpanRecord]) -> list[bytes]:
    """How DecisionTracer.record encoded each span on the hot path before (commit b610bfd)."""
    encoder = SpanEncoder(ds.SPAN_NAME, 2, ds.STATIC)
    prefix = encoder.string_prefix(ds.FLAG_CONTEXT_ID, HASH_DIGITS)
    out = []
    for decision, flag_key, context_id, trace_id, parent_id, start, end in records:
        enc = encoder.attribute
        parts = [
            enc(ds.FLAG_KEY, flag_key),
            enc(ds.FLAG_VARIANT, decision.cohort.value),
            enc(ds.FLAG_REASON, decision.reason.value),
            enc(ds.FLAG_VERSION, decision.version),
            enc(ds.RULE, decision.rule),
        ]
        if decision.bucket >= 0:
            parts.append(enc(ds.BUCKET, decision.bucket, cache=False))
        if decision.key_source:
            parts.append(enc(ds.KEY_HEADER, decision.key_source))
        attributes: tuple[bytes, ...] = (b"".join(parts),)
        if context_id is not None:
            attributes = (attributes[0], prefix, context_id.encode())
        out.append(encoder.span(trace_id, parent_id, start, end, attributes))
    return out


DECISIONS = st.builds(
    Decision,
    cohort=st.sampled_from(list(Cohort)),
    reason=st.sampled_from(list(Reason)),
    rule=st.sampled_from(["default", "force.v2", "ios-first", "eu"]),
    bucket=st.sampled_from([-1, 0, 127, 128, 9_999]) | st.integers(-1, 9_999),
    share=st.none() | st.integers(0, 10_000),
    version=st.sampled_from(["v1", "2026-12-01T00:00:00Z", ""]),
    key_source=st.sampled_from([None, "", "x-user-id", "x-device-id"]),
)
RECORDS = st.tuples(
    DECISIONS,
    st.sampled_from(["gpt-sovits-v2", "other"]),
    st.none() | st.text("0123456789abcdef", min_size=HASH_DIGITS, max_size=HASH_DIGITS),
    st.binary(min_size=16, max_size=16),
    st.just(b"") | st.binary(min_size=8, max_size=8),
    st.integers(0, 2**64 - 1),
    st.integers(0, 2**64 - 1),
)


@settings(max_examples=200, deadline=None)
@given(records=st.lists(RECORDS, max_size=2 * ENCODE_CHUNK + 3), seed=st.integers(0, 2**32))
def test_batched_encoding_equals_the_per_span_encoding(
    records: list[SpanRecord], seed: int
) -> None:
    ids = random.Random()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(otlp_spans, "_ids", ids)
        ids.seed(seed)
        expected = per_span_reference(records)
        ids.seed(seed)  # the same span ids
        assert DecisionSpans().encode(records) == expected


def test_encoded_spans_decode_to_the_decision() -> None:
    decision = Decision(Cohort.V2, Reason.SPLIT, "ios-first", 42, 2000, "v7", "x-user-id")
    spans = DecisionSpans().encode([(decision, "flag", "0123456789abcdef", TRACE, PARENT, 5, 9)])
    request = ExportTraceServiceRequest.FromString(
        export_request(resource_bytes({"service.name": "s"}), scope_bytes("extproc"), spans)
    )
    (span,) = request.resource_spans[0].scope_spans[0].spans
    assert (span.trace_id, span.parent_span_id, span.name, span.kind) == (
        TRACE,
        PARENT,
        ds.SPAN_NAME,
        2,
    )
    got = {a.key: a.value for a in span.attributes}
    assert got[ds.FLAG_VARIANT].string_value == "v2"
    assert got[ds.BUCKET].int_value == 42
    assert got[ds.FLAG_CONTEXT_ID].string_value == "0123456789abcdef"
    assert got[ds.KEY_HEADER].string_value == "x-user-id"


class Queue:
    def __init__(self) -> None:
        self.records: list[Any] = []

    def add(self, record: Any) -> None:
        self.records.append(record)


def test_the_tracer_queues_plain_values_for_sampled_decisions_only() -> None:
    queue = Queue()
    tracer = DecisionTracer(batcher=queue)
    decision = Decision(Cohort.V1, Reason.DEFAULT, "missing_key", -1, None, "v1")
    sampled = f"00-{TRACE.hex()}-{PARENT.hex()}-01"
    tracer.record(decision, "flag", None, sampled, 1, 2)
    tracer.record(decision, "flag", None, sampled[:-2] + "00", 1, 2)  # not sampled by Envoy
    tracer.record(decision, "flag", "0123456789abcdef", "garbage", 3, 4)  # a new root
    assert queue.records[0] == (decision, "flag", None, TRACE, PARENT, 1, 2)
    assert len(queue.records) == 2
    root = queue.records[1]
    assert root[2:] == ("0123456789abcdef", root[3], b"", 3, 4) and len(root[3]) == 16
    assert all(isinstance(value, (Decision, str, bytes, int, type(None))) for value in root)


class Exporter:
    def __init__(self) -> None:
        self.batches: list[list[bytes]] = []

    def export(self, spans: list[bytes]) -> None:
        self.batches.append(spans)

    def shutdown(self) -> None: ...


def test_the_batcher_encodes_in_the_export_thread_in_order() -> None:
    exporter = Exporter()
    batcher = SpanBatcher(exporter, lambda records: [f"<{r}>".encode() for r in records])
    for n in range(3 * ENCODE_CHUNK + 1):
        batcher.add(n)
    assert batcher.shutdown(5.0)
    spans = [span for batch in exporter.batches for span in batch]
    assert spans == [f"<{n}>".encode() for n in range(3 * ENCODE_CHUNK + 1)]
