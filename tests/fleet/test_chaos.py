"""The chaos run (chaos.py) in its short form, and its checkers on made-up data.

The short run lasts ``EXTPROC_CHAOS_SECONDS`` (default 75) of faults; the long one is
``python -m tests.fleet.chaos --minutes 10`` (or this test with the variable set).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from extproc.stack.stack import DEFAULT_RULES
from tests.fleet import figures
from tests.fleet.chaos import ROLLOUT, run_chaos
from tests.fleet.chaos_checks import check_audit
from tests.fleet.chaos_traffic import Observation, cohort_violations, share_sequence
from tests.support.cohorts import users_by_cohort

SECONDS = float(os.environ.get("EXTPROC_CHAOS_SECONDS", "75"))


def _entry(
    revision: int, to_share: str, from_share: str, stage: int, reason: str
) -> dict[str, object]:
    phase = "rolled_back" if reason == "rollback" else "ramping"
    return {
        "revision": revision,
        "from_share": from_share,
        "to_share": to_share,
        "to_phase": phase,
        "stage": stage,
        "reason": reason,
    }


AUDIT = [
    _entry(1, "10%", "0%", 1, "start"),
    _entry(2, "20%", "10%", 2, "step to 20%"),
    _entry(3, "0%", "20%", 2, "rollback"),
    _entry(4, "20%", "0%", 2, "resume"),
]


def test_the_cohort_check_accepts_changes_with_the_share_and_refuses_flapping() -> None:
    v2_at_10, _ = users_by_cohort(DEFAULT_RULES, 1000, 1)  # in v2 from 10 % on
    user = v2_at_10[0]
    states = share_sequence(AUDIT, ROLLOUT)
    # pending (the rules' 10 %): v2; rollback: v1; resume: v2 again. That is allowed.
    fine = [Observation(t, 0, user, v, 200, False) for t, v in enumerate(["v2", "v1", "v2"])]
    assert cohort_violations(fine, states, DEFAULT_RULES)[0] == []
    flapping = [*fine, Observation(9, 0, user, "v1", 200, False)]  # no share change for it
    violations, counts = cohort_violations(flapping, states, DEFAULT_RULES)
    assert len(violations) == 1 and user in violations[0]
    assert (counts["v2->v1"], counts["v1->v2"]) == (2, 1)
    served_without_sidecar = [*fine, Observation(9, 0, user, "v1", 200, True)]
    violations, counts = cohort_violations(served_without_sidecar, states, DEFAULT_RULES)
    assert violations == [] and counts["fail_open"] == 1


def test_the_audit_check_finds_gaps_and_repeated_steps() -> None:
    assert check_audit(AUDIT) == []
    repeated = [*AUDIT, _entry(5, "30%", "20%", 2, "step to 30%")]  # stage 2 again
    assert check_audit(repeated) == ["r5: stage 2 after 2"]
    gap = [AUDIT[0], AUDIT[2]]
    assert check_audit(gap)[0].startswith("audit revisions are not 1..2")


@pytest.mark.envoy
def test_chaos_short_run(tmp_path: Path) -> None:
    report = run_chaos(tmp_path, SECONDS, seed=int(os.environ.get("EXTPROC_CHAOS_SEED", "12")))
    for line in report.lines():
        figures.report(line)
    assert report.traffic["ok"] > 0 and report.audit_entries > 0
    assert report.problems() == []
