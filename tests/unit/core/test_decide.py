"""Cohort assignment: precedence, split accuracy, monotonic ramps, stickiness."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from extproc.core.bucket import BUCKETS, bucket_of, salt_prefix
from extproc.core.decide import Decider, decide
from extproc.core.loader import parse_rules
from extproc.core.model import Cohort, Identity, Reason, Rules

RULES = parse_rules(
    "t.yaml",
    b"""
rollout: {name: r, salt: test-salt, share: 10%}
identity: {user_header: x-user-id, fallback_headers: [x-device-id], when_missing: v2,
           max_key_bytes: 16}
force: {v2: [tester], v1: [vip]}
rules:
  - {name: eu, when: {region: [EU-West]}, cohort: v1}
  - {name: ios, when: {device: ["ios-*", "ipad*"]}, share: 100%}
  - {name: beta, when: {headers: {x-channel: [beta]}, region: [us]}, cohort: v2}
  - {name: us, when: {region: [us]}, share: 0%}
""",
)


def bucket(key: str, salt: str = "test-salt") -> int:
    return bucket_of(salt_prefix(salt), key.encode())


@pytest.mark.parametrize(
    ("headers", "cohort", "reason", "rule"),
    [
        ({"x-user-id": "tester", "x-region": "eu-west"}, "v2", "targeting_match", "force.v2"),
        ({"x-user-id": "vip", "x-device-model": "ios-17"}, "v1", "targeting_match", "force.v1"),
        ({"x-user-id": "u1", "x-region": "eu-west"}, "v1", "targeting_match", "rules.eu"),
        ({"x-user-id": "u1", "x-region": "EU-WEST"}, "v1", "targeting_match", "rules.eu"),
        ({"x-region": "eu-west"}, "v1", "targeting_match", "rules.eu"),  # no key needed
        ({"x-user-id": "u1", "x-device-model": "iOS-17"}, "v2", "split", "rules.ios"),
        ({"x-user-id": "u1", "x-device-model": "iPad9"}, "v2", "split", "rules.ios"),
        (
            {"x-user-id": "u1", "x-region": "us", "x-channel": "beta"},
            "v2",
            "targeting_match",
            "rules.beta",
        ),
        ({"x-user-id": "u1", "x-region": "us"}, "v1", "split", "rules.us"),
        (
            {"x-user-id": "u1", "x-region": "us", "x-device-model": "ios-1"},
            "v2",
            "split",
            "rules.ios",
        ),  # rule order: ios comes before us
        ({}, "v2", "default", "missing_key"),  # when_missing: v2
        ({"x-user-id": "x" * 17}, "v2", "default", "invalid_key"),  # over max_key_bytes
        ({"x-device-id": "tester"}, "v2", "targeting_match", "force.v2"),  # fallback key
    ],
)
def test_precedence(headers: dict[str, str], cohort: str, reason: str, rule: str) -> None:
    d = decide(RULES, headers)
    assert (d.cohort.value, d.reason.value, d.rule) == (cohort, reason, rule)
    assert d.version == RULES.version


def test_default_split_uses_the_bucket() -> None:
    for user in (f"user-{i}" for i in range(500)):
        d = decide(RULES, {"x-user-id": user})
        assert d.reason is Reason.SPLIT and d.rule == "default" and d.share == 1000
        assert d.bucket == bucket(user)
        assert d.cohort is (Cohort.V2 if bucket(user) < 1000 else Cohort.V1)


def test_user_header_wins_over_fallback() -> None:
    d = decide(RULES, {"x-user-id": "alice", "x-device-id": "tester"})
    assert d.key_source == "x-user-id" and d.bucket == bucket("alice")


def test_kill_switch_beats_everything() -> None:
    killed = replace(RULES, kill_switch=True)
    for headers in ({"x-user-id": "tester"}, {"x-user-id": "u", "x-device-model": "ios-1"}, {}):
        d = decide(killed, headers)
        assert (d.cohort, d.reason, d.rule) == (Cohort.V1, Reason.DISABLED, "kill_switch")


def test_split_at_ten_percent_over_twenty_thousand_users() -> None:
    decider = Decider(RULES)
    v2 = sum(decider.decide({"x-user-id": f"u{i:06d}"}).cohort is Cohort.V2 for i in range(20_000))
    assert abs(v2 / 20_000 * 100 - 10) <= 0.6, v2


def test_a_new_salt_reshuffles_the_population() -> None:
    other = replace(RULES, salt="another-salt")
    users = [f"u{i}" for i in range(4000)]
    v2_a = {u for u in users if decide(RULES, {"x-user-id": u}).cohort is Cohort.V2}
    v2_b = {u for u in users if decide(other, {"x-user-id": u}).cohort is Cohort.V2}
    overlap = len(v2_a & v2_b) / len(v2_a)
    assert overlap < 0.25  # independent 10 % draws overlap ~10 %


def plain(rules: Rules) -> Rules:
    """Only the default split: no rules, no force lists, default identity."""
    return replace(rules, rules=(), force_v1=frozenset(), force_v2=frozenset(), identity=Identity())


def at_share(rules: Rules, percent: float) -> Rules:
    return replace(rules, share=round(percent * BUCKETS / 100))


@settings(max_examples=60, deadline=None)
@given(
    salt=st.text(min_size=1, max_size=40),
    ids=st.lists(st.text(min_size=1, max_size=40), min_size=1, max_size=80, unique=True),
)
def test_ramp_up_never_moves_anyone_back_to_v1(salt: str, ids: list[str]) -> None:
    base = replace(plain(RULES), salt=salt)
    in_v2: set[str] = set()
    for share in (1, 5, 10, 20, 50, 100):
        decider = Decider(at_share(base, share))
        now = {u for u in ids if decider.decide({"x-user-id": u}).cohort is Cohort.V2}
        assert in_v2 <= now, f"left v2 at {share}%: {in_v2 - now}"
        in_v2 = now
    assert in_v2 == set(ids)  # at 100 % everyone is on v2


@settings(max_examples=60, deadline=None)
@given(ids=st.lists(st.text(min_size=1, max_size=20), min_size=1, max_size=80, unique=True))
def test_ramp_down_only_moves_users_to_v1(ids: list[str]) -> None:
    base = plain(RULES)
    in_v2 = set(ids)
    for share in (100, 50, 20, 10, 5, 1, 0):
        decider = Decider(at_share(base, share))
        now = {u for u in ids if decider.decide({"x-user-id": u}).cohort is Cohort.V2}
        assert now <= in_v2, f"joined v2 while ramping down at {share}%: {now - in_v2}"
        in_v2 = now
    assert in_v2 == set()


def test_decider_memo_is_bounded_and_pure() -> None:
    decider = Decider(RULES)
    for i in range(10_000):
        decider.decide({"x-user-id": "u", "x-device-model": f"dev-{i}"})
    assert len(decider._memo) <= 4096
    assert decider.decide({"x-user-id": "u1", "x-region": "eu-west"}).rule == "rules.eu"
