"""Arbitrary headers and garbage messages never break the real server.

One server serves the whole property (module fixture), so the examples also
prove that no input leaves it in a bad state for the next request.
"""

from __future__ import annotations

import grpc
import pytest
from envoy.service.ext_proc.v3 import external_processor_pb2 as ext_proc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from extproc.core.decide import decide
from extproc.core.model import Rules
from extproc.sidecar.server import EXT_PROC_SERVICE

from .harness import Sidecar, cohort_of, expected_metadata, metadata_of, user_request

#: The names the rules read, so fuzzed values reach the decision, plus any name.
KNOWN_NAMES = ["x-user-id", "x-device-id", "x-region", "x-device-model", "x-beta", ":path"]
names = st.one_of(st.sampled_from(KNOWN_NAMES), st.text(max_size=40))
values = st.one_of(
    st.binary(max_size=64),
    st.sampled_from([b"", b"qa-001", b"vip-42", b"eu-west", b"ios-17", b"on", b"\xff\xfe\x00"]),
    st.integers(200, 300).map(lambda n: b"k" * n),  # around identity.max_key_bytes
    st.just(b"\x80" * 100_000),
)
header = st.tuples(names, values, st.sampled_from(["raw_value", "value"]))
headers = st.lists(header, max_size=60)


def request_of(fuzzed: list[tuple[str, bytes, str]]) -> ext_proc.ProcessingRequest:
    request = ext_proc.ProcessingRequest()
    request.request_headers.headers.SetInParent()
    for name, value, field in fuzzed:
        entry = request.request_headers.headers.headers.add()
        entry.key = name
        if field == "raw_value":
            entry.raw_value = value
        else:  # the text field cannot hold arbitrary bytes
            entry.value = value.decode("utf-8", "replace")
    return request


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(fuzzed=headers)
def test_fuzzed_headers_always_get_a_cohort(sidecar: Sidecar, rules: Rules, fuzzed) -> None:
    # The fuzzed request, then a normal one on the same stream: both must be answered.
    response, normal = sidecar.process(request_of(fuzzed), user_request("user-next"))
    cohort = cohort_of(response)
    assert cohort in ("v1", "v2")
    assert response.request_headers.response.clear_route_cache is True
    meta = metadata_of(response)
    assert meta["cohort"] == cohort
    # "error" would mean the decision raised inside the server and was papered over.
    assert meta["reason"] != "error", meta
    assert metadata_of(normal) == expected_metadata(decide(rules, {"x-user-id": "user-next"}))


def test_server_still_decides_after_the_fuzzing(sidecar: Sidecar, rules: Rules) -> None:
    meta = metadata_of(sidecar.decide(user_request("user-after-fuzz")))
    assert meta == expected_metadata(decide(rules, {"x-user-id": "user-after-fuzz"}))
    assert sidecar.metric_total("tts_canary_stream_errors_total") == 0


GARBAGE = [
    b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff",  # a varint that never ends
    b"\x0a\xff\xff\xff\x0f",  # a field claiming ~4 GB
    b"\x07",  # wire type 7 does not exist
]


@pytest.mark.parametrize("garbage", GARBAGE)
def test_garbage_message_fails_that_stream_only(sidecar: Sidecar, garbage: bytes) -> None:
    with pytest.raises(Exception):  # noqa: B017 - the message itself must be unparsable
        ext_proc.ProcessingRequest.FromString(garbage)
    raw = sidecar.channel.stream_stream(
        f"/{EXT_PROC_SERVICE}/Process",
        request_serializer=lambda b: b,
        response_deserializer=lambda b: b,
    )
    before = sidecar.metric("tts_canary_stream_errors_total", kind="bad_message")
    with pytest.raises(grpc.RpcError) as info:
        list(raw(iter([garbage]), timeout=10))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a ProcessingRequest" in (info.value.details() or "")
    assert sidecar.metric("tts_canary_stream_errors_total", kind="bad_message") == before + 1

    response = sidecar.decide(user_request("user-after-garbage"))
    assert cohort_of(response) in ("v1", "v2")
    assert metadata_of(response)["reason"] == "split"
