"""Envoy facts the design relies on, proved through a real Envoy.

Most use the naive processor (50 % share, no rules) so that they test envoy/envoy.yaml and not
the sidecar: the spoofed cohort header is stripped before routing, a dead or hung processor
fails open to v1, a dead one is skipped without a connection attempt, /healthz never asks the
processor. The last one uses the real sidecar: its dynamic metadata reaches the access log.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from extproc.stack.client import Reply
from extproc.stack.stack import Stack

pytestmark = pytest.mark.envoy

Send = Callable[..., Reply]
SPELLINGS = ["x-tts-cohort", "X-TTS-Cohort", "X-Tts-Cohort", "x-TTS-cOHORT"]


def cohorts_by_user(stack: Stack, send: Send, count: int = 40) -> dict[str, str]:
    """Ask Envoy (processor up) which upstream each of ``count`` users reaches."""
    replies = {f"user-{i}": send(stack, {"x-user-id": f"user-{i}"}) for i in range(count)}
    assert {reply.status for reply in replies.values()} == {200}
    return {user: str(reply.version) for user, reply in replies.items()}


def split(stack: Stack, send: Send) -> tuple[list[str], list[str]]:
    """(v1 users, v2 users) according to the processor; both non-empty at a 50 % share."""
    by_user = cohorts_by_user(stack, send)
    v1 = [user for user, version in by_user.items() if version == "v1"]
    v2 = [user for user, version in by_user.items() if version == "v2"]
    assert v1 and v2, by_user
    return v1, v2


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_a_client_cohort_header_changes_nothing_with_the_processor_up(
    naive: Stack, send: Send, spelling: str
) -> None:
    v1_users, v2_users = split(naive, send)
    for user in v1_users:
        reply = send(naive, {"x-user-id": user, spelling: "v2"})
        assert (reply.status, reply.version) == (200, "v1")
        assert reply.headers["x-tts-seen-cohort"] == "v1"  # the processor's value, not ours
    for user in v2_users:
        reply = send(naive, {"x-user-id": user, spelling: "v1"})
        assert (reply.status, reply.version) == (200, "v2")


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_a_client_cohort_header_cannot_reach_v2_with_the_processor_dead(
    naive: Stack, send: Send, spelling: str
) -> None:
    naive.kill_sidecar()
    for i in range(20):
        headers = {"x-user-id": f"user-{i}", spelling: "v2", "X-Tts-Cohort": "v2"}
        reply = send(naive, headers)
        assert (reply.status, reply.version) == (200, "v1")
        assert reply.headers["x-tts-seen-cohort"] == "-"  # stripped before it reached v1


def test_a_killed_processor_fails_open_to_v1_and_the_split_comes_back(
    naive: Stack, send: Send
) -> None:
    _, v2_users = split(naive, send)
    envoy_pid = naive.envoy.pid
    naive.kill_sidecar()
    # Right after the kill (Envoy has not noticed yet) and once its health check has.
    assert {send(naive, {"x-user-id": u})[:2] for u in v2_users} == {(200, "v1")}
    naive.wait_sidecar_health_in_envoy(healthy=False)
    assert {send(naive, {"x-user-id": u})[:2] for u in v2_users} == {(200, "v1")}
    naive.start_sidecar()
    assert {send(naive, {"x-user-id": u})[:2] for u in v2_users} == {(200, "v2")}
    assert naive.envoy.pid == envoy_pid


def test_a_hung_processor_fails_open_to_v1(naive: Stack, send: Send) -> None:
    _, v2_users = split(naive, send)
    # Normally the request waits message_timeout; if Envoy's health check happened to take the
    # hung sidecar out first, it fails open at once. Either way: exactly one fail-open.
    pattern = r"(ext_proc\.message_timeouts|extproc_sidecar\.upstream_cx_none_healthy)$"
    before = sum(naive.envoy_stats(pattern).values())
    naive.pause_sidecar()
    assert send(naive, {"x-user-id": v2_users[0]})[:2] == (200, "v1")
    assert sum(naive.envoy_stats(pattern).values()) == before + 1
    naive.wait_sidecar_health_in_envoy(healthy=False)
    assert {send(naive, {"x-user-id": u})[:2] for u in v2_users} == {(200, "v1")}
    naive.resume_sidecar()
    naive.wait_sidecar_health_in_envoy(healthy=True)
    assert {send(naive, {"x-user-id": u})[:2] for u in v2_users} == {(200, "v2")}


def test_a_dead_processor_costs_no_connection_attempt_per_request(naive: Stack, send: Send) -> None:
    naive.kill_sidecar()
    naive.wait_sidecar_health_in_envoy(healthy=False)
    pattern = r"cluster\.extproc_sidecar\.upstream_cx_(connect_fail|none_healthy)$"
    before = naive.envoy_stats(pattern)
    for i in range(20):
        assert send(naive, {"x-user-id": f"user-{i}"})[:2] == (200, "v1")
    after = naive.envoy_stats(pattern)
    connect_fail = "cluster.extproc_sidecar.upstream_cx_connect_fail"
    none_healthy = "cluster.extproc_sidecar.upstream_cx_none_healthy"
    assert after.get(connect_fail, 0) == before.get(connect_fail, 0)
    assert after[none_healthy] == before.get(none_healthy, 0) + 20


@pytest.mark.parametrize("processor_up", [True, False])
def test_healthz_is_answered_without_the_processor(
    naive: Stack, send: Send, processor_up: bool
) -> None:
    if not processor_up:
        naive.kill_sidecar()
    started = naive.envoy_stats(r"ext_proc\.streams_started$")
    reply = send(naive, {}, path="/healthz", method="GET", body=None)
    assert reply.status == 200
    assert reply.version is None  # answered by Envoy itself
    assert naive.envoy_stats(r"ext_proc\.streams_started$") == started


def test_the_sidecar_decision_reaches_envoy_access_log(stack: Stack, send: Send) -> None:
    offset = stack.access_log_size()
    users = [f"user-{i}" for i in range(30)] + ["qa-001"]
    versions = {user: send(stack, {"x-user-id": user}).version for user in users}
    entries = stack.wait_access_log(len(users), offset)
    assert len(entries) == len(users)
    for user, entry in zip(users, entries, strict=True):
        assert entry["cohort"] == versions[user]
        assert entry["upstream_cluster"] == f"tts_{versions[user]}"
        assert entry["status"] == 200
        assert entry["reason"] and entry["rule"] and entry["rules_version"]
        assert isinstance(entry["bucket"], int | float)
    assert versions["qa-001"] == "v2"  # the example rules' force list
