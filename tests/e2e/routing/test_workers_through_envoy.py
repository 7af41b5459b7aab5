"""``extproc serve --workers 2`` behind the real Envoy with the shipped cluster settings.

With Envoy's defaults one HTTP/2 connection would carry every decision to one worker; the
shipped ``max_concurrent_streams`` / ``max_requests_per_connection`` make Envoy open and
rotate connections, which the kernel deals over the workers (SO_REUSEPORT). Checked here:
both workers decide requests, every request is served, and each user gets the same cohort
as from a single-worker sidecar (assignment is a pure function: sticky across processes).
"""

from __future__ import annotations

import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from extproc.stack.stack import Stack

pytestmark = pytest.mark.envoy

USERS = [f"worker-user-{i}" for i in range(400)]
BATCHES = 25  # bounded: 25 x 400 requests at most before giving up


def decisions_by_worker(stack: Stack) -> dict[str, float]:
    with urllib.request.urlopen(stack.metrics_url, timeout=5) as reply:
        body = reply.read().decode()
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            if sample.name == "tts_canary_decisions_total":
                worker = sample.labels.get("worker", "-")
                counts[worker] = counts.get(worker, 0.0) + sample.value
    return counts


def cohorts(stack: Stack, send_all) -> dict[str, str]:
    replies = send_all(stack, [{"x-user-id": user} for user in USERS], threads=16)
    assert [reply.status for reply in replies] == [200] * len(USERS)
    return {user: str(reply.version) for user, reply in zip(USERS, replies, strict=True)}


@pytest.mark.timeout(240)
def test_two_workers_both_decide_and_agree_with_one_worker(make_stack, send_all) -> None:
    single = make_stack()
    expected = cohorts(single, send_all)
    assert set(expected.values()) == {"v1", "v2"}
    single.close()

    stack = make_stack(sidecar_args=["--workers", "2"])
    for _ in range(BATCHES):
        assert cohorts(stack, send_all) == expected  # sticky whichever worker decided
        by_worker = decisions_by_worker(stack)
        if len([n for n in by_worker.values() if n > 0]) == 2:
            break
    assert set(by_worker) == {"0", "1"} and all(n > 0 for n in by_worker.values()), by_worker
    fail_open = stack.envoy_stats(r"ext_proc\.(failure_mode_allowed|message_timeouts)$")
    assert sum(fail_open.values()) == 0, fail_open
    rotated = stack.envoy_stats(r"cluster\.extproc_sidecar\.upstream_cx_total$")
    assert sum(rotated.values()) > 1, "Envoy kept one connection to the sidecar"
