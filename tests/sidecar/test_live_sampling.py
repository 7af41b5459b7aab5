"""Live sampling in the real in-process sidecar (both server models), the scoring child
running the fake scorer (tests/support/fake_scorer.py: no models).

Envoy's side is played by hand: a sampled stream sends the request headers, then the bodies
carrying the token the sidecar put in its answer (what ``forwarding_namespaces`` makes Envoy
do; the real thing is in tests/e2e/quality/test_live_sampling_envoy.py). Checked: an unsampled
answer is byte for byte the plain sidecar's; a sampled one asks for both bodies
(BUFFERED_PARTIAL) with a token; every body message is answered at once with "continue"; the
text and the audio meet in the scorer; hostile bodies and a crashing scorer are counted, and
many sampled streams at once leave the decisions alone, every sample accounted for (scored or
dropped).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from envoy.extensions.filters.http.ext_proc.v3 import processing_mode_pb2 as mode_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as ext_proc

from .harness import NAMESPACE, Sidecar, cohort_of, metadata_of, user_request, wait_for

FAKE = "tests.support.fake_scorer:assess"
LIVE = "tts_quality_live_"
PARTIAL = mode_pb2.ProcessingMode.BUFFERED_PARTIAL
V2_USER, V1_USER = "qa-001", "vip-42"  # forced cohorts in the harness rules


@pytest.fixture
def sampling(start_sidecar: Callable[..., Sidecar], rules_file: Path) -> Sidecar:
    """v2 sampled at 100 %, v1 never."""
    return start_sidecar(
        rules_file, sample_rates=(("v1", 0.0), ("v2", 1.0)), sample_scorer=FAKE, sample_cpu=4.0
    )


def body_message(
    phase: str, token: str, body: bytes, end: bool = True
) -> ext_proc.ProcessingRequest:
    """A body message as Envoy sends it for a sampled request (the namespace forwarded)."""
    request = ext_proc.ProcessingRequest()
    fields = request.metadata_context.filter_metadata[NAMESPACE].fields
    fields["cohort"].string_value = "v2"
    fields["sample"].string_value = token
    message = getattr(request, phase)
    message.body = body
    message.end_of_stream = end
    return request


def text(words: str) -> bytes:
    return json.dumps({"text": words}).encode()


def sampled_exchange(sidecar: Sidecar, words: str, audio: bytes, end: bool = True) -> list[str]:
    """One sampled request on one stream: headers, request body, response body; the phases
    of the answers."""
    with_token = sidecar.decide(user_request(V2_USER))
    token = metadata_of(with_token)["sample"]
    assert isinstance(token, str) and token
    answers = sidecar.process(
        user_request(V2_USER),
        body_message("request_body", token, text(words)),
        body_message("response_body", token, audio, end),
    )
    for answer in answers[1:]:  # bodies: continue, unchanged
        phase = answer.WhichOneof("response")
        assert not getattr(answer, phase).HasField("response"), phase
    return [answer.WhichOneof("response") for answer in answers]


def scored(sidecar: Sidecar, outcome: str) -> float:
    return sidecar.metric(f"{LIVE}scored_total", cohort="v2", outcome=outcome)


def test_an_unsampled_answer_is_the_plain_sidecars(
    sampling: Sidecar, start_sidecar: Callable[..., Sidecar], rules_file: Path
) -> None:
    plain = start_sidecar(rules_file)
    for user in (V1_USER, "user-123", "user-456"):
        answer = sampling.decide(user_request(user))
        if cohort_of(answer) == "v1":
            assert answer == plain.decide(user_request(user)), user
            assert not answer.HasField("mode_override")
    assert sampling.metric(f"{LIVE}sampled_total", cohort="v1") == 0


def test_a_sampled_answer_asks_for_both_bodies_with_a_token(sampling: Sidecar) -> None:
    answer = sampling.decide(user_request(V2_USER))
    assert cohort_of(answer) == "v2"
    mode = answer.mode_override
    assert (mode.request_body_mode, mode.response_body_mode) == (PARTIAL, PARTIAL)
    first = metadata_of(answer)
    second = metadata_of(sampling.decide(user_request(V2_USER)))
    assert first["sample"] != second["sample"]  # a token per request, not per user
    assert first["cohort"] == "v2" and first["rule"] == "force.v2"
    assert sampling.metric(f"{LIVE}sampled_total", cohort="v2") == 2


def test_text_and_audio_meet_in_the_scorer(sampling: Sidecar) -> None:
    phases = sampled_exchange(sampling, "hello there", b"RIFF\x96" + b"\0" * 100)
    assert phases == ["request_headers", "request_body", "response_body"]
    wait_for(lambda: scored(sampling, "valid") == 1, "the sample to be scored")
    assert sampling.metric(f"{LIVE}mos_sum", cohort="v2") == pytest.approx(0x96 / 50)
    assert sampling.metric(f"{LIVE}seconds_per_char_count", cohort="v2") == 0  # fake: none


def test_hostile_bodies_are_counted_invalid_and_a_scorer_crash_costs_one_sample(
    sampling: Sidecar,
) -> None:
    hostile = [
        b"<html>not audio</html>",  # non-audio
        b"RIF",  # truncated WAV header
        b"",  # empty
        b"\xff" * (3 << 20),  # huge, not audio
    ]
    for n, body in enumerate(hostile, 1):
        sampled_exchange(sampling, "some words", body)
        # one at a time: the queue (8) never fills, so every one is scored
        wait_for(lambda: scored(sampling, "invalid") == n, f"invalid sample {n}")  # noqa: B023
    sampled_exchange(sampling, "crash", b"RIFF\x64")  # the fake scorer's process dies
    wait_for(lambda: sampling.metric(f"{LIVE}scorer_failures_total", reason="crash") == 1, "crash")
    sampled_exchange(sampling, "fine", b"RIFF\x64", end=False)  # a prefix: partial answer
    wait_for(lambda: scored(sampling, "valid") == 1, "a fresh child to score the next one")
    assert cohort_of(sampling.decide(user_request(V2_USER))) == "v2"


def test_many_sampled_streams_at_once_leave_decisions_alone(sampling: Sidecar) -> None:
    count = 60

    def one(n: int) -> bool:
        """One drawn request: True if it was sampled (bodies sent), False if skipped."""
        answer = sampling.decide(user_request(V2_USER))
        assert cohort_of(answer) == "v2"
        token = metadata_of(answer).get("sample")
        if token is None:  # skipped at decision time: the plain answer, no body asked for
            assert not answer.HasField("mode_override")
            return False
        audio = b"RIFF\x80" + bytes(4000)
        answers = sampling.process(
            user_request(V2_USER),
            body_message("request_body", str(token), text(f"text number {n}")),
            body_message("response_body", str(token), audio),
        )
        assert [a.WhichOneof("response") for a in answers] == [
            "request_headers",
            "request_body",
            "response_body",
        ]
        return True

    with ThreadPoolExecutor(8) as pool:
        taken = sum(pool.map(one, range(count)))
    assert taken > 0

    def accounted() -> float:
        dropped = sampling.metric_total(f"{LIVE}dropped_total")
        failed = sampling.metric_total(f"{LIVE}scorer_failures_total")
        return scored(sampling, "valid") + scored(sampling, "invalid") + dropped + failed

    wait_for(lambda: accounted() == taken, f"all {taken} samples scored or dropped", 60)
    assert scored(sampling, "invalid") == 0
    skipped = sampling.metric_total(f"{LIVE}skipped_total")
    assert skipped >= count - taken  # every drawn request not sampled is counted
    print(
        f"\n{count} drawn streams: {taken} sampled, {skipped:g} skipped (queue full), "
        f"{scored(sampling, 'valid'):g} scored, "
        f"{sampling.metric(f'{LIVE}dropped_total', reason='queue_full'):g} dropped (queue full)"
    )
