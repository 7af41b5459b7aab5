"""Hand-encoded OTLP spans decode, with the real opentelemetry-proto, to what was meant."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from extproc.telemetry.otlp_spans import SpanEncoder, export_request, resource_bytes, scope_bytes
from extproc.telemetry.tracing import _parent

TRACE = bytes.fromhex("4bf92f3577b34da6a3ce929d0e0e4736")
PARENT = bytes.fromhex("00f067aa0ba902b7")


def decode(spans: list[bytes]) -> ExportTraceServiceRequest:
    body = export_request(
        resource_bytes({"service.name": "svc"}), scope_bytes("extproc", "1"), spans
    )
    return ExportTraceServiceRequest.FromString(body)


@settings(max_examples=100, deadline=None)
@given(
    text=st.text(max_size=300),
    number=st.integers(min_value=-(2**63), max_value=2**63 - 1),
    start=st.integers(min_value=0, max_value=2**64 - 1),
)
def test_span_round_trip(text: str, number: int, start: int) -> None:
    encoder = SpanEncoder("op/Name", 2, {"rpc.system": "grpc", "flag": True, "ratio": 0.5})
    attrs = [encoder.attribute("s", text, cache=False), encoder.attribute("n", number)]
    request = decode([encoder.span(TRACE, PARENT, start, start, attrs)])
    (resource_spans,) = request.resource_spans
    assert resource_spans.resource.attributes[0].value.string_value == "svc"
    (scope_spans,) = resource_spans.scope_spans
    assert (scope_spans.scope.name, scope_spans.scope.version) == ("extproc", "1")
    (span,) = scope_spans.spans
    assert (span.trace_id, span.parent_span_id, span.name, span.kind) == (
        TRACE,
        PARENT,
        "op/Name",
        2,
    )
    assert len(span.span_id) == 8 and span.start_time_unix_nano == start
    got = {a.key: a.value for a in span.attributes}
    assert got["rpc.system"].string_value == "grpc" and got["flag"].bool_value is True
    assert got["ratio"].double_value == 0.5
    assert got["s"].string_value == text and got["n"].int_value == number


def test_root_span_has_no_parent_and_spans_get_distinct_ids() -> None:
    encoder = SpanEncoder("op", 2, {})
    request = decode([encoder.span(TRACE, b"", 1, 2, []) for _ in range(50)])
    spans = request.resource_spans[0].scope_spans[0].spans
    assert all(s.parent_span_id == b"" for s in spans)
    assert len({s.span_id for s in spans}) == 50


def test_traceparent_parsing() -> None:
    good = f"00-{TRACE.hex()}-{PARENT.hex()}-01"
    assert _parent([("traceparent", good)]) == (TRACE, PARENT, True)
    assert _parent({"traceparent": good[:-2] + "00"}) == (TRACE, PARENT, False)
    for bad in ("", "garbage", f"ff-{TRACE.hex()}-{PARENT.hex()}-01",
                f"00-{'0' * 32}-{PARENT.hex()}-01", f"00-{TRACE.hex()}-xyz-01"):  # fmt: skip
        assert _parent({"traceparent": bad}) is None


def test_sampler_from_the_environment_is_honoured() -> None:
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased

    from extproc.telemetry.tracing import DecisionTracer

    parent_sampled, parent_dropped = (TRACE, PARENT, True), (TRACE, PARENT, False)
    default = DecisionTracer(batcher=object(), sampler=ParentBased(ALWAYS_ON))
    assert default._sampled(TRACE, None) and default._sampled(TRACE, parent_sampled)
    assert not default._sampled(TRACE, parent_dropped)
    off = DecisionTracer(batcher=object(), sampler=ALWAYS_OFF)
    assert not off._sampled(TRACE, None) and not off._sampled(TRACE, parent_sampled)
    root_off = DecisionTracer(batcher=object(), sampler=ParentBased(ALWAYS_OFF))
    assert not root_off._sampled(TRACE, None) and root_off._sampled(TRACE, parent_sampled)


def test_fixed_length_string_attribute_from_its_prefix() -> None:
    encoder = SpanEncoder("op", 2, {})
    prefix = encoder.string_prefix("feature_flag.context.id", 16)
    value = "0123456789abcdef"
    assert prefix + value.encode() == encoder.attribute("feature_flag.context.id", value, False)
    request = decode([encoder.span(TRACE, PARENT, 1, 2, [prefix, value.encode()])])
    (attribute,) = request.resource_spans[0].scope_spans[0].spans[0].attributes
    assert (attribute.key, attribute.value.string_value) == ("feature_flag.context.id", value)


@settings(max_examples=200, deadline=None)
@given(
    trace=st.binary(min_size=16, max_size=16),
    span=st.binary(min_size=8, max_size=8),
    flags=st.integers(min_value=0, max_value=255),
)
def test_traceparent_of_any_valid_ids_and_flags(trace: bytes, span: bytes, flags: int) -> None:
    from extproc.telemetry.tracing import parse_traceparent

    value = f"00-{trace.hex()}-{span.hex()}-{flags:02x}"
    expected = (trace, span, bool(flags & 1)) if any(trace) and any(span) else None
    assert parse_traceparent(value) == expected
    # surrounding blanks are tolerated
    assert parse_traceparent(f" {value} ") == expected


def test_span_and_trace_ids_are_random_and_never_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    from extproc.telemetry import otlp_spans

    draws = iter([0, 0, 7])
    monkeypatch.setattr(otlp_spans._ids, "getrandbits", lambda bits: next(draws))
    assert otlp_spans.new_span_id() == (7).to_bytes(8)
    draws = iter([0, 5])
    assert otlp_spans.new_trace_id() == (5).to_bytes(16)


def test_span_ids_do_not_follow_the_global_random_seed() -> None:
    import random

    from extproc.telemetry.otlp_spans import new_span_id

    random.seed(1)
    first = new_span_id()
    random.seed(1)
    assert new_span_id() != first
