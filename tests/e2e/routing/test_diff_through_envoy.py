"""`extproc diff` predicts what Envoy routes: the users it says are in v2 under a rules file
are exactly the users a real Envoy + sidecar sends to v2 under that file, before and after
an edit is hot-reloaded, and the users it says move are exactly those whose answering model
changes.

A private stack serves a copy of examples/rules.yaml. 400 users (random ids, every region /
device of the example's rules and some it does not name, testers and a protected user, one
without a key) go through Envoy under OLD; then NEW (a wider iOS share, one more region
forced to v1, a new tester) is written and reloaded, and they go through again.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from extproc.core.loader import load_rules
from extproc.core.model import Rules
from extproc.diff.engine import DOWN, UP, run_diff
from extproc.diff.population import Group, ListPopulation
from extproc.stack.client import Reply
from extproc.stack.processes import wait_until
from extproc.stack.stack import DEFAULT_RULES, Stack

pytestmark = pytest.mark.envoy

REGIONS = ["eu-west", "eu-central", "us-east", "ap-southeast", None]
DEVICES = ["ios-17", "iOS-18", "android-14", "web", None]
EDITS = [
    ("share: 20%", "share: 45%"),
    ("region: [eu-west, eu-central]", "region: [eu-west, eu-central, ap-southeast]"),
    ("v2: [qa-001, qa-002]", "v2: [qa-001, qa-002, diff-user-7]"),
]


def population() -> ListPopulation:
    rng = random.Random(17)
    ids = [f"diff-user-{i}" for i in range(394)] + ["qa-001", "qa-002", "vip-42", ""]
    ids += [f"{rng.getrandbits(40):x}" for _ in range(2)]
    groups = [Group(rng.choice(REGIONS), rng.choice(DEVICES)) for _ in ids]
    distinct = list(dict.fromkeys(groups))
    return ListPopulation(ids, [distinct.index(g) for g in groups], distinct)


def headers_of(users: ListPopulation) -> list[dict[str, str]]:
    out = []
    for i in range(users.size):
        user_id, g = users.user(i)
        headers = users.groups[g].request_headers("x-region", "x-device-model")
        if user_id:
            headers["x-user-id"] = user_id
        out.append(headers)
    return out


def predicted_v2(rules: Rules, users: ListPopulation) -> set[int]:
    """Positions of the users the dry run puts in v2 under ``rules`` (against all-v1)."""
    everyone_v1 = replace(rules, kill_switch=True)
    diff = run_diff(everyone_v1, rules, users, lambda key: key, sample=users.size)
    position = {users.user(i)[0]: i for i in range(users.size)}
    assert diff.moved(DOWN) == 0
    return {position[key] for key in diff.samples[UP]}


def routed_v2(stack: Stack, send_all: Callable[..., list[Reply]], requests: list) -> set[int]:  # type: ignore[type-arg]
    replies = send_all(stack, requests)
    assert {r.status for r in replies} == {200}
    return {i for i, r in enumerate(replies) if r.version == "v2"}


def test_the_dry_run_predicts_envoys_routing_before_and_after_an_edit(
    make_stack: Callable[..., Stack],
    send_all: Callable[..., list[Reply]],
    tmp_path: Path,
) -> None:
    rules_path = tmp_path / "rules.yaml"
    text = DEFAULT_RULES.read_text("utf-8")
    rules_path.write_text(text)
    edited = text
    for old, new in EDITS:
        assert old in edited
        edited = edited.replace(old, new, 1)
    new_path = tmp_path / "new.yaml"
    new_path.write_text(edited)
    old_rules, new_rules = load_rules(rules_path), load_rules(new_path)
    users = population()
    requests = headers_of(users)
    stack = make_stack(rules=rules_path)

    before = routed_v2(stack, send_all, requests)
    assert before == predicted_v2(old_rules, users)

    probe = requests[users.locate({"diff-user-7"})["diff-user-7"]]
    rules_path.write_text(edited)
    wait_until(lambda: send_all(stack, [probe])[0].version == "v2", "the edit to be served", 10)
    after = routed_v2(stack, send_all, requests)
    assert after == predicted_v2(new_rules, users)

    diff = run_diff(old_rules, new_rules, users, lambda key: key, sample=users.size)
    ids = [users.user(i)[0] for i in range(users.size)]
    assert sorted(diff.samples[UP]) == sorted(ids[i] for i in after - before)
    assert sorted(diff.samples[DOWN]) == sorted(ids[i] for i in before - after)
    assert diff.samples[UP] and diff.samples[DOWN]  # the edit moves users both ways
