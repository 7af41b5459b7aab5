"""Observing a fleet of gateways (Envoy + sidecar stacks) for the through-the-stack test.

- ``revision_of(stack)``: the rollout revision the sidecar applies (its /metrics).
- ``wait_revision(stacks, revision)``: poll every sidecar round-robin until each applies
  ``revision`` (or later); returns the wall-clock time each was first seen there, so that the
  propagation of a change (written at ``updated_at``, same host clock) can be measured.
- ``watch_health(stack)``: whether the sidecar's etcd watch is connected, and its fault
  count over every class (its /metrics).
- ``cohorts(stacks, users)``: the model version that answered each user through each
  gateway (every request must succeed).
"""

from __future__ import annotations

import re
import time
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from extproc.stack import client
from extproc.stack.processes import NotReadyError
from extproc.stack.stack import Stack
from tests.support import promql

POLL_SECONDS = 0.002  # the measuring resolution; keeps the poll from starving 2 cores
_REVISION = re.compile(r"^tts_canary_rollout_revision (\S+)$", re.MULTILINE)
_FAILED = re.compile(r'^tts_canary_rollout_state_reloads_total\{outcome="failed"\} (\S+)$', re.M)
_CONNECTED = re.compile(r"^tts_canary_state_watch_connected (\S+)$", re.M)
_FAULTS = re.compile(r'^tts_canary_state_watch_faults_total\{class="[a-z_]+"\} (\S+)$', re.M)


def _metrics(stack: Stack) -> str:
    with urllib.request.urlopen(stack.metrics_url, timeout=2) as response:
        return str(response.read().decode())


def revision_of(stack: Stack) -> int:
    found = _REVISION.search(_metrics(stack))
    return int(float(found.group(1))) if found else -1


def state_failures(stack: Stack) -> int:
    """How often the sidecar's state source reported a failure (an etcd outage, once)."""
    found = _FAILED.search(_metrics(stack))
    return int(float(found.group(1))) if found else 0


def exposed_names(stack: Stack) -> set[str]:
    """Every metric name in the sidecar's scrape, as Prometheus stores it."""
    return promql.exposed_names(_metrics(stack))


def watch_health(stack: Stack) -> tuple[bool, int]:
    """(whether the sidecar's etcd watch follows etcd, its faults of every class)."""
    text = _metrics(stack)
    connected = _CONNECTED.search(text)
    faults = sum(int(float(value)) for value in _FAULTS.findall(text))
    return connected is not None and float(connected.group(1)) == 1.0, faults


def wait_revision(stacks: Sequence[Stack], revision: int, timeout: float) -> list[float]:
    """Wall-clock time at which each sidecar was first seen applying ``revision``."""
    seen: dict[int, float] = {}
    deadline = time.monotonic() + timeout
    while len(seen) < len(stacks):
        for index, stack in enumerate(stacks):
            if index not in seen and revision_of(stack) >= revision:
                seen[index] = time.time()
        if time.monotonic() > deadline:
            missing = [i for i in range(len(stacks)) if i not in seen]
            raise NotReadyError(f"revision {revision} not applied by sidecars {missing}")
        time.sleep(POLL_SECONDS)
    return [seen[i] for i in range(len(stacks))]


def cohorts(stacks: Sequence[Stack], users: Sequence[str]) -> list[dict[str, str | None]]:
    """For each gateway, user -> the version that answered; every reply must be a 200."""

    def ask(job: tuple[Stack, str]) -> tuple[int, str | None]:
        stack, user = job
        reply = client.send(stack, {"x-user-id": user})
        return reply.status, reply.version

    jobs = [(stack, user) for stack in stacks for user in users]
    with ThreadPoolExecutor(4) as pool:
        replies = list(pool.map(ask, jobs))
    bad = [(j[1], r) for j, r in zip(jobs, replies, strict=True) if r[0] != 200]
    assert not bad, f"{len(bad)} requests failed, e.g. {bad[:3]}"
    per_gateway: list[dict[str, str | None]] = []
    for index in range(len(stacks)):
        chunk = replies[index * len(users) : (index + 1) * len(users)]
        per_gateway.append({user: version for user, (_, version) in zip(users, chunk, strict=True)})
    return per_gateway
