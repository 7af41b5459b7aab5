"""Live sampling through the real Envoy: the shipped config (``allow_mode_override``, the
``tts_canary`` namespace forwarded with body messages), the real sidecar at 100 % sampling,
speaking stand-ins, the real scorers in the sidecar's scoring child.

v2 turned to silence (HTTP 200, normal latency) shows up in the live per-cohort figures
(``tts_quality_live_*`` on the sidecar's /metrics) while every client request still gets 200,
its own model's answer and the whole WAV. The request text reaches the scorer (a sample
without it would be scored invalid: ``no_text``), so valid v1 samples prove the two bodies
were tied together.
"""

from __future__ import annotations

import json
import shutil
import statistics
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from extproc.stack import client
from extproc.stack.processes import wait_until
from extproc.stack.stack import DEFAULT_RULES, Stack
from tests.support import scrape
from tests.support.cohorts import interleave, users_by_cohort
from tests.support.speaking import SPEAKING_ENVOY
from tests.support.standin_faults import set_fault

pytestmark = SPEAKING_ENVOY

V2_USERS, V1_USERS = users_by_cohort(DEFAULT_RULES, 1000, per_cohort=4)  # examples: 10 %
TEXT = "The old lighthouse keeper climbed the narrow stairs every evening."
LIVE = "tts_quality_live_"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    run_dir = tmp_path_factory.mktemp("live-sampling")
    rules = run_dir / "rules.yaml"
    shutil.copyfile(DEFAULT_RULES, rules)
    # 100 % of both cohorts sampled; scoring budget of 2 cores (a test, not a default).
    env = {"EXTPROC_SAMPLE_RATE": "1", "EXTPROC_SAMPLE_CPU": "2"}
    with Stack.with_free_ports(run_dir=run_dir, rules=rules, sidecar_env=env) as running:
        yield running
    client.close_connections()


def whole_wav(body: bytes) -> bool:
    """A RIFF WAV whose RIFF size covers exactly the bytes received."""
    return body[:4] == b"RIFF" and struct.unpack_from("<I", body, 4)[0] + 8 == len(body)


def mean(exposition: str, name: str, cohort: str) -> float:
    count = scrape.total(exposition, f"{LIVE}{name}_count", cohort=cohort)
    return scrape.total(exposition, f"{LIVE}{name}_sum", cohort=cohort) / count


def test_silent_v2_shows_in_the_live_figures_while_users_get_their_audio(
    stack: Stack, tmp_path: Path
) -> None:
    set_fault(stack, "v2", silence=True)
    try:
        body = json.dumps({"text": TEXT}).encode()
        for user in interleave(V2_USERS, V1_USERS):
            reply, audio = client.request(
                stack.listener_address, {"x-user-id": user}, body=body, timeout=60
            )
            assert reply.status == 200, user
            assert reply.version == ("v2" if user in V2_USERS else "v1"), user
            assert whole_wav(audio), f"{user}: {len(audio)} bytes, not the whole WAV"

        def scored(cohort: str) -> float:
            exposition = scrape.fetch(stack.metrics_url)
            return scrape.total(exposition, f"{LIVE}scored_total", cohort=cohort)

        wait_until(lambda: scored("v1") >= 2 and scored("v2") >= 2, "2 live samples each", 180)
    finally:
        set_fault(stack, "v2", silence=False)
    exposition = scrape.fetch(stack.metrics_url)
    for cohort in ("v1", "v2"):
        assert scrape.total(exposition, f"{LIVE}sampled_total", cohort=cohort) == len(V1_USERS)
    v1_valid = scrape.total(exposition, f"{LIVE}scored_total", cohort="v1", outcome="valid")
    assert v1_valid >= 2  # the text reached the scorer with its audio
    silence = {cohort: mean(exposition, "silence_ratio", cohort) for cohort in ("v1", "v2")}
    mos = {cohort: mean(exposition, "mos", cohort) for cohort in ("v1", "v2")}
    dropped = scrape.total(exposition, f"{LIVE}dropped_total")
    print(
        f"\nlive figures: silence ratio v1 {silence['v1']:.2f} v2 {silence['v2']:.2f}, "
        f"DNSMOS v1 {mos['v1']:.2f} v2 {mos['v2']:.2f}, {dropped:g} dropped"
    )
    assert silence["v2"] > 0.9 > 0.5 > silence["v1"]
    assert mos["v2"] < mos["v1"]


def test_added_latency_of_a_sampled_request(stack: Stack, tmp_path: Path) -> None:
    """Printed, not asserted (no timing assertions): the same v1 request alternately through
    this stack (every request drawn) and a second one with sampling off, paired rounds. A drawn
    request is sampled only when the scorer has room (admission); the pairs whose request was
    sampled (the sidecar's sampled counter rose) are the figure, the skipped ones are counted."""
    rules = tmp_path / "rules.yaml"
    shutil.copyfile(DEFAULT_RULES, rules)
    body = json.dumps({"text": TEXT}).encode()
    user = {"x-user-id": V1_USERS[0]}

    def sampled_so_far() -> float:
        exposition = scrape.fetch(stack.metrics_url)
        return scrape.total(exposition, f"{LIVE}sampled_total", cohort="v1")

    with Stack.with_free_ports(run_dir=tmp_path / "unsampled", rules=rules) as plain:
        for target in (stack, plain):  # warm: the stand-ins cache the synthesized text
            client.request(target.listener_address, user, body=body, timeout=60)
        added, skipped_added, sizes = [], [], []
        for _ in range(40):
            before = sampled_so_far()
            times = []
            for target in (stack, plain):
                began = time.perf_counter()
                reply, audio = client.request(target.listener_address, user, body=body, timeout=60)
                times.append((time.perf_counter() - began) * 1000)
                assert reply.status == 200 and whole_wav(audio)
                sizes.append(len(audio))
            sampled = sampled_so_far() > before
            (added if sampled else skipped_added).append(times[0] - times[1])
    assert added, "no request of the 40 was sampled: the scorer never had room"
    skipped = (
        f"; {len(skipped_added)} skipped (scorer busy): {statistics.median(skipped_added):+.2f} ms"
        if skipped_added
        else ""
    )
    print(
        f"\nsampled request (BUFFERED_PARTIAL both bodies, real sidecar, "
        f"{statistics.median(sizes) // 1024:.0f} KiB WAV): median paired difference "
        f"{statistics.median(added):+.2f} ms over {len(added)} sampled pairs{skipped}"
        " (shared machine)"
    )
