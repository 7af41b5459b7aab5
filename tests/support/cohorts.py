"""Users picked by cohort: ask the real decision core which users a rollout puts where."""

from __future__ import annotations

from pathlib import Path

from extproc.core.decide import Decider
from extproc.core.loader import load_rules
from extproc.core.model import Cohort
from extproc.rollout.effective import apply_state
from extproc.rollout.state import Phase, RolloutState


def users_by_cohort(
    rules_path: Path, share: int, per_cohort: int = 40
) -> tuple[list[str], list[str]]:
    """``per_cohort`` users in v2 and as many in v1 (default population: no region, device or
    forced listing) when the rollout of ``rules_path`` ramps at ``share`` buckets."""
    rules = load_rules(rules_path)
    effective = apply_state(rules, RolloutState(rules.name, phase=Phase.RAMPING, share=share))
    decider = Decider(effective)
    v2: list[str] = []
    v1: list[str] = []
    i = 0
    while len(v2) < per_cohort or len(v1) < per_cohort:
        user = f"listener-{i}"
        i += 1
        decision = decider.decide({"x-user-id": user})
        if decision.rule != "default":
            continue
        group = v2 if decision.cohort is Cohort.V2 else v1
        if len(group) < per_cohort:
            group.append(user)
    return v2, v1


def interleave(a: list[str], b: list[str]) -> list[str]:
    """a[0], b[0], a[1], b[1], ..."""
    return [user for pair in zip(a, b, strict=True) for user in pair]


def expected_versions(rules_path: Path, share: int, users: list[str]) -> dict[str, str]:
    """The model version each user should hear while the rollout ramps at ``share``."""
    rules = load_rules(rules_path)
    effective = apply_state(rules, RolloutState(rules.name, phase=Phase.RAMPING, share=share))
    decider = Decider(effective)
    return {user: decider.decide({"x-user-id": user}).cohort.value for user in users}
