"""Sticky cohorts and the split, through a real Envoy and the real sidecar (DESIGN invariant 1).

The shared stack serves a copy of examples/rules.yaml; every expected cohort is the decision
core's answer for the same file. ``x-tts-model-version`` says which upstream answered and
``x-tts-seen-cohort`` which cohort header reached it, so a request that failed open (no
decision, "-") cannot pass for a v1 decision.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Sequence

import pytest

from extproc.core.bucket import BUCKETS
from extproc.core.decide import Decider
from extproc.core.loader import load_rules
from extproc.stack.client import Reply
from extproc.stack.stack import Stack

pytestmark = pytest.mark.envoy

SendAll = Callable[..., list[Reply]]


def core_cohorts(stack: Stack, users: Sequence[str]) -> dict[str, str]:
    """What the decision core says for each user under the stack's rules file."""
    decider = Decider(load_rules(stack.rules))
    return {user: decider.decide({"x-user-id": user}).cohort.value for user in users}


def upstreams(
    stack: Stack, send_all: SendAll, users: Sequence[str], rounds: int
) -> dict[str, set[str]]:
    """Send ``rounds`` requests per user, shuffled over keep-alive connections on 4 threads
    (so one user's requests take different connections); the upstreams each user reached."""
    order = [user for _ in range(rounds) for user in users]
    random.Random(1).shuffle(order)
    replies = send_all(stack, [{"x-user-id": user} for user in order])
    assert {reply.status for reply in replies} == {200}
    reached: dict[str, set[str]] = defaultdict(set)
    for user, reply in zip(order, replies, strict=True):
        assert reply.headers["x-tts-seen-cohort"] == reply.version, (user, reply)
        reached[user].add(str(reply.version))
    return reached


def only_upstream(reached: dict[str, set[str]]) -> dict[str, str]:
    """The one upstream of each user; fails naming the users who reached both."""
    both = {user: sorted(versions) for user, versions in reached.items() if len(versions) > 1}
    assert both == {}, f"{len(both)} users reached more than one upstream"
    return {user: next(iter(versions)) for user, versions in reached.items()}


def test_every_user_keeps_one_upstream_across_requests_and_a_sidecar_restart(
    stack: Stack, send_all: SendAll
) -> None:
    users = [f"sticky-user-{i}" for i in range(1000)]
    expected = core_cohorts(stack, users)
    assert set(expected.values()) == {"v1", "v2"}  # the sample exercises both upstreams

    first = only_upstream(upstreams(stack, send_all, users, rounds=5))
    assert first == expected

    envoy_pid, sidecar_pid = stack.envoy.pid, stack.sidecar.pid
    stack.restart_sidecar()  # returns once Envoy's health check sees the new one healthy
    assert stack.sidecar.pid != sidecar_pid
    assert stack.envoy.pid == envoy_pid

    again = only_upstream(upstreams(stack, send_all, users, rounds=1))
    changed = {user: (first[user], again[user]) for user in users if again[user] != first[user]}
    assert changed == {}, f"{len(changed)} users changed upstream across the restart"


def test_the_default_share_sends_each_user_where_the_core_decides(
    stack: Stack, send_all: SendAll
) -> None:
    rules = load_rules(stack.rules)
    assert rules.share == BUCKETS // 10  # precondition: the example rules' 10 %
    decider = Decider(rules)
    users = [f"split-user-{i}" for i in range(2000)]
    decisions = {user: decider.decide({"x-user-id": user}) for user in users}
    assert {d.rule for d in decisions.values()} == {"default"}  # no force list, no rule

    replies = send_all(stack, [{"x-user-id": user} for user in users])
    assert {reply.status for reply in replies} == {200}
    observed = {user: reply.version for user, reply in zip(users, replies, strict=True)}
    wrong = {
        u: (observed[u], d.cohort.value) for u, d in decisions.items() if observed[u] != d.cohort
    }
    assert wrong == {}, f"{len(wrong)} users reached another upstream than the core decided"

    share = 100 * sum(version == "v2" for version in observed.values()) / len(users)
    print(f"\nv2 share through Envoy at 10 %: {share:.2f} % of {len(users)} users")
    assert 8.0 <= share <= 12.0
