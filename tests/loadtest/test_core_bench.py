"""The core benchmark's rules stay valid: 100 rules, 10,000 listed users (no timing)."""

from __future__ import annotations

from extproc.core.decide import Decider
from extproc.core.loader import parse_rules
from loadtest.core_bench import rules_text


def test_benchmark_rules_load_and_decide() -> None:
    rules = parse_rules("bench.yaml", rules_text())
    assert len(rules.rules) == 100
    assert len(rules.force_v1) + len(rules.force_v2) == 10_000
    decider = Decider(rules)
    assert decider.decide({"x-user-id": "qa-7"}).rule == "force.v2"
    assert decider.decide({"x-user-id": "u", "x-region": "zone-3"}).rule == "rules.r3"
    assert decider.decide({"x-user-id": "u", "x-app-channel": "chan-5"}).rule == "rules.r5"
