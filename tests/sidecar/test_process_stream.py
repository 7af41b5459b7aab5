"""The Process stream through a real in-process gRPC server, checked against the core.

Every expected decision is computed by ``extproc.core.decide.decide`` on the same
headers; the tests only hard-code which *path* (rule) a case is meant to exercise,
so a case that silently stops reaching its rule fails too.
"""

from __future__ import annotations

import grpc
import pytest
from envoy.service.ext_proc.v3 import external_processor_pb2 as ext_proc

from extproc.core.bucket import bucket_of, salt_prefix
from extproc.core.decide import decide
from extproc.core.model import Rules

from .harness import (
    OpenStream,
    Sidecar,
    cohort_of,
    expected_metadata,
    headers_request,
    metadata_of,
    user_request,
)

BIG = "u" * 100_000  # far over identity.max_key_bytes (256)

#: (case id, headers as sent, the rule label the case must reach)
CASES = [
    ("plain-user", [("x-user-id", b"user-123")], "default"),
    ("force-v2", [("x-user-id", b"qa-001")], "force.v2"),
    ("force-v1", [("x-user-id", b"vip-42")], "force.v1"),
    ("force-beats-rule", [("x-user-id", b"qa-001"), ("x-region", b"eu-west")], "force.v2"),
    ("region-rule", [("x-user-id", b"user-1"), ("x-region", b"eu-central")], "rules.eu-hold"),
    ("region-case", [("x-user-id", b"user-1"), ("x-region", b"EU-West")], "rules.eu-hold"),
    ("other-region", [("x-user-id", b"user-1"), ("x-region", b"us-east")], "default"),
    ("device-glob", [("x-user-id", b"user-7"), ("x-device-model", b"ios-17.2")], "rules.ios-first"),
    ("device-miss", [("x-user-id", b"user-7"), ("x-device-model", b"android-14")], "default"),
    ("rule-order", [("x-region", b"eu-west"), ("x-device-model", b"ios-1")], "rules.eu-hold"),
    ("header-rule", [("x-user-id", b"user-9"), ("x-beta", b"on")], "rules.beta-header"),
    ("header-miss", [("x-user-id", b"user-9"), ("x-beta", b"off")], "default"),
    ("fallback-key", [("x-device-id", b"device-abc")], "default"),
    ("empty-user-falls-back", [("x-user-id", b""), ("x-device-id", b"dev-1")], "default"),
    ("missing-key", [("x-region", b"us-east")], "missing_key"),
    ("no-headers", [], "missing_key"),
    ("missing-key-own-share", [("x-device-model", b"ios-9")], "missing_key"),
    ("huge-user-id", [("x-user-id", BIG.encode())], "invalid_key"),
    ("huge-then-fallback", [("x-user-id", BIG.encode()), ("x-device-id", b"d-1")], "default"),
]


def as_plain(pairs: list[tuple[str, bytes]]) -> dict[str, str]:
    """What the core expects: first value of each header, as text."""
    plain: dict[str, str] = {}
    for name, value in pairs:
        plain.setdefault(name, value.decode("utf-8", "surrogateescape"))
    return plain


@pytest.mark.parametrize(("pairs", "rule"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_request_headers_answer_matches_core(
    sidecar: Sidecar, rules: Rules, pairs: list[tuple[str, bytes]], rule: str
) -> None:
    expected = decide(rules, as_plain(pairs))
    assert expected.rule == rule, "the case no longer reaches the rule it was written for"

    response = sidecar.decide(headers_request(pairs))

    assert response.WhichOneof("response") == "request_headers"
    assert cohort_of(response) == expected.cohort.value
    assert response.request_headers.response.clear_route_cache is True
    assert metadata_of(response) == expected_metadata(expected)


def test_missing_key_follows_the_policy_not_a_hardwired_v1(sidecar: Sidecar, rules: Rules) -> None:
    assert rules.identity.when_missing.value == "v2"  # the fixture's policy
    for pairs in ([], [("x-user-id", BIG.encode())]):
        response = sidecar.decide(headers_request(pairs))
        assert cohort_of(response) == "v2"
        assert metadata_of(response)["reason"] == "default"


def test_non_utf8_key_hashes_the_exact_bytes(sidecar: Sidecar, rules: Rules) -> None:
    raw = b"\xff\xfe user \x80\x00 id"
    response = sidecar.decide(headers_request([("x-user-id", raw)]))
    meta = metadata_of(response)
    assert meta["reason"] == "split"
    assert meta["bucket"] == bucket_of(salt_prefix(rules.salt), raw)
    assert meta == expected_metadata(decide(rules, as_plain([("x-user-id", raw)])))


def test_repeated_header_first_value_wins(sidecar: Sidecar) -> None:
    first, second = "user-first", "user-second"
    a, b = (metadata_of(sidecar.decide(user_request(u))) for u in (first, second))
    assert a["bucket"] != b["bucket"], "pick two users with different buckets"

    both = headers_request([("x-user-id", first.encode()), ("x-user-id", second.encode())])
    assert metadata_of(sidecar.decide(both)) == a


def test_value_field_is_read_when_raw_value_is_empty(sidecar: Sidecar, rules: Rules) -> None:
    pairs = [("x-user-id", b"user-text"), ("x-region", b"eu-west")]
    via_value = sidecar.decide(headers_request(pairs, field="value"))
    via_raw = sidecar.decide(headers_request(pairs))
    assert metadata_of(via_value) == metadata_of(via_raw)
    assert metadata_of(via_value) == expected_metadata(decide(rules, as_plain(pairs)))


PHASES = [
    "response_headers",
    "request_body",
    "response_body",
    "request_trailers",
    "response_trailers",
]


@pytest.mark.parametrize("phase", PHASES)
def test_other_phases_get_an_empty_continue_and_the_stream_goes_on(
    sidecar: Sidecar, rules: Rules, phase: str
) -> None:
    other = ext_proc.ProcessingRequest()
    getattr(other, phase).SetInParent()

    first, second, third = sidecar.process(other, user_request("user-5"), other)

    for response in (first, third):
        assert response.WhichOneof("response") == phase
        assert response == ext_proc.ProcessingResponse(**{phase: {}})
    expected = decide(rules, {"x-user-id": "user-5"})
    assert metadata_of(second) == expected_metadata(expected)


def test_many_messages_on_one_stream_answered_in_order(sidecar: Sidecar, rules: Rules) -> None:
    users = [f"stream-user-{i}" for i in range(200)]
    responses = sidecar.process(*(user_request(u) for u in users))
    assert [metadata_of(r) for r in responses] == [
        expected_metadata(decide(rules, {"x-user-id": u})) for u in users
    ]


def test_decisions_are_counted_by_cohort_and_reason(sidecar: Sidecar) -> None:
    labels = {"cohort": "v2", "reason": "targeting_match", "rule": "force.v2"}
    before = sidecar.metric("tts_canary_decisions_total", **labels)
    sidecar.process(user_request("qa-001"), user_request("qa-001"))
    assert sidecar.metric("tts_canary_decisions_total", **labels) == before + 2


def test_client_cancel_is_not_a_stream_error(start_sidecar, rules_file) -> None:
    own = start_sidecar(rules_file)
    # Envoy's normal end: the answer was read, then the stream is reset.
    stream = OpenStream(own.stub)
    assert cohort_of(stream.exchange(user_request("user-cancel"))) in ("v1", "v2")
    stream.cancel()
    with pytest.raises(grpc.RpcError) as info:
        next(stream.call)
    assert info.value.code() == grpc.StatusCode.CANCELLED
    # A reset before the answer (the request ended early): the handler is cancelled
    # in the middle of the stream, the case an error counter would most likely catch.
    for i in range(20):
        early = OpenStream(own.stub)
        early.send(user_request(f"user-early-{i}"))
        early.cancel()
    assert own.decide(user_request("user-after"))
    own.stop()  # a drained stop: every cancelled handler has finished
    assert own.metric_total("tts_canary_stream_errors_total") == 0
    assert own.metric_total("tts_canary_decisions_total") >= 2
