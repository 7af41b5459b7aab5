"""What a sidecar serves under a rollout state (rules file + state), decided for real."""

from __future__ import annotations

from extproc.core.bucket import BUCKETS
from extproc.core.decide import Decider
from extproc.core.loader import parse_rules
from extproc.core.model import Cohort, Rules
from extproc.rollout.effective import apply_state
from extproc.rollout.state import Phase, RolloutState

RULES = parse_rules(
    "rules.yaml",
    b"""rollout: {name: r, salt: s, share: 10%}
force: {v2: [qa-001]}
rules:
  - {name: ios-first, when: {device: "ios-*"}, share: 20%}
""",
)
USERS = [f"user-{i}" for i in range(2000)]


def v2_share(rules: Rules, extra: dict[str, str] | None = None) -> float:
    decider = Decider(rules)
    hits = sum(decider.decide({"x-user-id": u, **(extra or {})}).cohort is Cohort.V2 for u in USERS)
    return hits / len(USERS)


def state(phase: Phase, share: int, rollout: str = "r") -> RolloutState:
    return RolloutState(rollout, revision=3, phase=phase, stage=2, share=share)


def test_no_state_serves_the_rules_file_as_is() -> None:
    assert apply_state(RULES, None) is RULES


def test_a_state_of_another_rollout_is_ignored() -> None:
    assert apply_state(RULES, state(Phase.RAMPING, BUCKETS, rollout="other")) is RULES


def test_ramping_replaces_the_default_share_and_tags_the_version() -> None:
    effective = apply_state(RULES, state(Phase.RAMPING, BUCKETS * 3 // 10))
    assert effective.share == BUCKETS * 3 // 10
    assert effective.version == f"{RULES.version}+r3"
    assert 0.25 < v2_share(effective) < 0.35


def test_rolled_back_to_zero_sends_everyone_to_v1_testers_included() -> None:
    effective = apply_state(RULES, state(Phase.ROLLED_BACK, 0))
    decision = Decider(effective).decide({"x-user-id": "qa-001"})
    assert decision.cohort is Cohort.V1 and decision.rule == "rolled_back"
    assert v2_share(effective, {"x-device-model": "ios-17"}) == 0


def test_rolled_back_to_a_small_share_caps_every_rule_share() -> None:
    effective = apply_state(RULES, state(Phase.ROLLED_BACK, BUCKETS // 20))
    assert effective.share == BUCKETS // 20
    assert [r.share for r in effective.rules] == [BUCKETS // 20]
    assert v2_share(effective, {"x-device-model": "ios-17"}) < 0.08
    tester = Decider(effective).decide({"x-user-id": "qa-001"})
    assert tester.cohort is Cohort.V2  # force lists stay as written


def test_raising_the_share_only_moves_users_from_v1_to_v2() -> None:
    low = Decider(apply_state(RULES, state(Phase.RAMPING, BUCKETS // 5)))
    high = Decider(apply_state(RULES, state(Phase.RAMPING, BUCKETS * 3 // 10)))
    for user in USERS:
        if low.decide({"x-user-id": user}).cohort is Cohort.V2:
            assert high.decide({"x-user-id": user}).cohort is Cohort.V2
