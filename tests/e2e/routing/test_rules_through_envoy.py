"""Every kind of rule, decided by the real sidecar behind a real Envoy.

A private stack serves a dedicated rules file: force lists, a region rule forcing v1, header
value and regex rules, a device-glob rule with its own share that shadows a later device rule,
a fallback key header and ``when_missing: v2`` (the opposite of the default, so the policy is
really read). For each case the decision core, with the same file, gives the expected
decision; the test checks the upstream that answered and the decision Envoy logged from the
sidecar's dynamic metadata (cohort, reason, rule, bucket, rules version).

Each case also names the rule it is meant to exercise and the core must agree, so a case that
silently stopped testing its rule fails instead of passing. Keys are picked by the core (e.g.
"a user who would be v2 without the rule"), never hard-coded.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from extproc.core.decide import Decider
from extproc.core.loader import load_rules, parse_rules
from extproc.core.model import Decision
from extproc.stack.client import Reply
from extproc.stack.stack import Stack

pytestmark = pytest.mark.envoy

SendAll = Callable[..., list[Reply]]
Logged = Callable[..., dict[str, dict[str, Any]]]
StackFactory = Callable[..., Stack]

RULES: list[dict[str, Any]] = [
    {"name": "eu-hold", "when": {"region": ["eu-west", "eu-central"]}, "cohort": "v1"},
    {"name": "beta-channel", "when": {"headers": {"x-app-channel": ["beta"]}}, "cohort": "v2"},
    {
        "name": "old-app",
        "when": {"headers": {"x-app-version": {"regex": r"1\.[0-9]+"}}},
        "cohort": "v1",
    },
    {"name": "android-half", "when": {"device": "android-*"}, "share": "50%"},
    {"name": "pixel-hold", "when": {"device": ["android-pixel-*"]}, "cohort": "v1"},
]
LOGGED_FIELDS = ("cohort", "reason", "rule", "bucket", "rules_version", "upstream_cluster")


def rules_yaml(rules: list[dict[str, Any]]) -> str:
    document = {
        "rollout": {"name": "rules-e2e", "salt": "rules-e2e-2026", "share": "10%"},
        "identity": {
            "user_header": "x-user-id",
            "fallback_headers": ["x-device-id"],
            "when_missing": "v2",
        },
        "attributes": {"region": "x-region", "device": "x-device-model"},
        "force": {"v2": ["tester-1", "tester-2"], "v1": ["protected-1"]},
        "rules": rules,
    }
    return yaml.safe_dump(document, sort_keys=False)


@dataclass(frozen=True)
class Case:
    name: str
    rule: str  # the rule this case exercises (checked against the core, not against Envoy)
    headers: dict[str, str]
    order_matters: bool = False  # reversing the rules must change the core's cohort


class Picker:
    """Synthetic keys with a given core decision, each used once."""

    def __init__(self, decider: Decider) -> None:
        self.decider = decider
        self.taken: set[str] = set()

    def key(self, prefix: str, cohort: str, header: str = "x-user-id", **extra: str) -> str:
        """The first unused ``prefix-N`` that, sent in ``header`` beside the ``extra`` headers
        (``x_device_model`` -> ``x-device-model``), is decided ``cohort``."""
        headers = {name.replace("_", "-"): value for name, value in extra.items()}
        for i in range(10_000):
            key = f"{prefix}-{i}"
            decision = self.decider.decide({**headers, header: key})
            if key not in self.taken and decision.cohort == cohort:
                self.taken.add(key)
                return key
        raise AssertionError(f"no {prefix} key is decided {cohort}")


def cases(decider: Decider) -> list[Case]:
    pick = Picker(decider)
    was_v2 = pick.key("user", "v2")  # v2 by the default share: a rule must hold it back
    was_v1 = pick.key("user", "v1")
    pixel_v2 = pick.key("user", "v2", x_device_model="android-pixel-7")
    too_long = "k" * (decider.rules.identity.max_key_bytes + 1)
    return [
        Case("default share: v2", "default", {"x-user-id": was_v2}),
        Case("default share: v1", "default", {"x-user-id": was_v1}),
        Case("force v2", "force.v2", {"x-user-id": "tester-2"}),
        Case(
            "force v2 beats a v1 rule", "force.v2", {"x-user-id": "tester-1", "x-region": "eu-west"}
        ),
        Case(
            "force v1 beats a v2 rule",
            "force.v1",
            {"x-user-id": "protected-1", "x-app-channel": "beta"},
        ),
        Case("region forces v1", "rules.eu-hold", {"x-user-id": was_v2, "x-region": "eu-central"}),
        Case("region in any case", "rules.eu-hold", {"x-user-id": was_v2, "x-region": "EU-West"}),
        Case("another region", "default", {"x-user-id": was_v2, "x-region": "us-east"}),
        Case(
            "header value forces v2",
            "rules.beta-channel",
            {"x-user-id": was_v1, "x-app-channel": "beta"},
        ),
        Case("another header value", "default", {"x-user-id": was_v1, "x-app-channel": "stable"}),
        Case(
            "header regex forces v1", "rules.old-app", {"x-user-id": was_v2, "x-app-version": "1.4"}
        ),
        Case("regex is a full match", "default", {"x-user-id": was_v2, "x-app-version": "11.4"}),
        Case(
            "order: region rule before header rule",
            "rules.eu-hold",
            {"x-user-id": was_v1, "x-region": "eu-west", "x-app-channel": "beta"},
            order_matters=True,
        ),
        Case(
            "order: device share before device hold",
            "rules.android-half",
            {"x-user-id": pixel_v2, "x-device-model": "android-pixel-7"},
            order_matters=True,
        ),
        Case(
            "device glob in any case",
            "rules.android-half",
            {"x-user-id": pixel_v2, "x-device-model": "Android-Pixel-7"},
        ),
        Case("device glob, no match", "default", {"x-user-id": was_v2, "x-device-model": "ios-17"}),
        Case("fallback key: v1", "default", {"x-device-id": pick.key("dev", "v1", "x-device-id")}),
        Case("fallback key: v2", "default", {"x-device-id": pick.key("dev", "v2", "x-device-id")}),
        Case(
            "user id before fallback",
            "default",
            {"x-user-id": was_v1, "x-device-id": pick.key("dev", "v2", "x-device-id")},
        ),
        Case("no key: when_missing v2", "missing_key", {"x-region": "us-east"}),
        Case("key too long: when_missing v2", "invalid_key", {"x-user-id": too_long}),
        Case("no key, a rule forcing v1", "rules.eu-hold", {"x-region": "eu-west"}),
        Case("no key, a rule with a share", "missing_key", {"x-device-model": "android-9"}),
    ]


def expected_fields(decision: Decision) -> dict[str, Any]:
    """What Envoy should log for ``decision`` (metadata from the sidecar, the upstream)."""
    return {
        "cohort": decision.cohort.value,
        "reason": decision.reason.value,
        "rule": decision.rule,
        "bucket": decision.bucket,
        "rules_version": decision.version,
        "upstream_cluster": f"tts_{decision.cohort.value}",
    }


def through_envoy(
    stack: Stack, send_all: SendAll, logged: Logged, requests: Sequence[Mapping[str, str]]
) -> list[tuple[Reply, dict[str, Any]]]:
    """Send each request with its own x-request-id: each reply with its access-log entry."""
    offset = stack.access_log_size()
    tagged = [{**headers, "x-request-id": str(uuid.uuid4())} for headers in requests]
    replies = send_all(stack, tagged)
    entries = logged(stack, [headers["x-request-id"] for headers in tagged], offset)
    return [(r, entries[h["x-request-id"]]) for h, r in zip(tagged, replies, strict=True)]


@pytest.fixture
def rules_stack(tmp_path: Path, make_stack: StackFactory) -> Stack:
    path = tmp_path / "rules.yaml"
    path.write_text(rules_yaml(RULES))
    return make_stack(rules=path)


def test_each_rule_decides_through_envoy_as_the_core_does(
    rules_stack: Stack, send_all: SendAll, logged: Logged
) -> None:
    rules = load_rules(rules_stack.rules)
    decider = Decider(rules)
    reversed_rules = parse_rules("reversed.yaml", rules_yaml(RULES[::-1]).encode())
    table = cases(decider)
    decisions = [decider.decide(case.headers) for case in table]
    # The table tests what it says: each case hits its rule, order cases depend on the order.
    assert [d.rule for d in decisions] == [case.rule for case in table]
    for case, decision in zip(table, decisions, strict=True):
        if case.order_matters:
            assert Decider(reversed_rules).decide(case.headers).cohort != decision.cohort

    answered = through_envoy(rules_stack, send_all, logged, [case.headers for case in table])

    expected = {
        case.name: {
            "status": 200,
            "answered_by": d.cohort.value,
            "cohort_seen_upstream": d.cohort.value,
            **expected_fields(d),
        }
        for case, d in zip(table, decisions, strict=True)
    }
    observed = {
        case.name: {
            "status": reply.status,
            "answered_by": reply.version,
            "cohort_seen_upstream": reply.headers.get("x-tts-seen-cohort"),
            **{field: entry.get(field) for field in LOGGED_FIELDS},
        }
        for case, (reply, entry) in zip(table, answered, strict=True)
    }
    differences = {
        name: {k: (got, expected[name][k]) for k, got in fields.items() if got != expected[name][k]}
        for name, fields in observed.items()
    }
    assert {name: diff for name, diff in differences.items() if diff} == {}, "(got, expected)"


def test_a_device_rule_applies_its_own_share(
    rules_stack: Stack, send_all: SendAll, logged: Logged
) -> None:
    decider = Decider(load_rules(rules_stack.rules))
    requests = [
        {"x-user-id": f"phone-user-{i}", "x-device-model": f"android-model-{i % 7}"}
        for i in range(400)
    ]
    decisions = [decider.decide(headers) for headers in requests]
    assert {d.rule for d in decisions} == {"rules.android-half"}

    answered = through_envoy(rules_stack, send_all, logged, requests)

    assert [(r.status, r.version) for r, _ in answered] == [(200, d.cohort) for d in decisions]
    assert [entry["bucket"] for _, entry in answered] == [d.bucket for d in decisions]
    share = 100 * sum(reply.version == "v2" for reply, _ in answered) / len(answered)
    print(f"\nv2 share of the android-* rule (50 %) through Envoy: {share:.1f} % of 400 users")
    assert 42.0 <= share <= 58.0
