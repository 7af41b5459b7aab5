"""The pure rollout state machine: which action each phase allows, the controller's tick,
the ramp only ever climbing (never more than double), and resume after a rollback."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from extproc.core.bucket import BUCKETS
from extproc.rollout import state as sm
from extproc.rollout.policy import FreezeWindow, Policy
from extproc.rollout.state import Change, Phase, RolloutState, TransitionError, Verdict

T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z
HOUR = 3600.0
PCT = BUCKETS // 100
POLICY = Policy(
    rollout="r",
    initial_share=10 * PCT,
    step=10 * PCT,
    step_interval=2 * HOUR,
    rollback_share=0,
)

Action = Callable[[RolloutState], Change]
ACTIONS: dict[str, Action] = {
    "start": lambda s: sm.start(s, POLICY, T0, "op"),
    "pause": lambda s: sm.pause(s, T0, "op"),
    "resume": lambda s: sm.resume(s, POLICY, T0, "op"),
    "rollback": lambda s: sm.rollback(s, POLICY, T0, "op"),
    "promote": lambda s: sm.promote(s, T0, "op"),
    "set_share": lambda s: sm.set_share(s, 5 * PCT, T0, "op"),
}
ALLOWED = {
    "start": {Phase.PENDING},
    "pause": {Phase.RAMPING},
    "resume": {Phase.PAUSED, Phase.ROLLED_BACK},
    "rollback": {Phase.PENDING, Phase.RAMPING, Phase.PAUSED, Phase.COMPLETED},
    "promote": {Phase.PENDING, Phase.RAMPING, Phase.PAUSED, Phase.ROLLED_BACK},
    "set_share": {Phase.RAMPING, Phase.PAUSED, Phase.ROLLED_BACK},
}
RESULT = {
    "start": Phase.RAMPING,
    "pause": Phase.PAUSED,
    "resume": Phase.RAMPING,
    "rollback": Phase.ROLLED_BACK,
    "promote": Phase.COMPLETED,
}


def in_phase(phase: Phase) -> RolloutState:
    """A state of rollout 'r' at revision 7 in ``phase`` (at 20 % unless pending)."""
    share = 0 if phase is Phase.PENDING else 20 * PCT
    due = T0 + HOUR if phase is Phase.RAMPING else None
    return RolloutState("r", revision=7, phase=phase, stage=2, share=share, next_step_at=due)


@pytest.mark.parametrize("phase", list(Phase))
@pytest.mark.parametrize("action", list(ACTIONS))
def test_transition_table(action: str, phase: Phase) -> None:
    before = in_phase(phase)
    if phase not in ALLOWED[action]:
        with pytest.raises(TransitionError, match=f"that is {phase.value} \\(allowed from: "):
            ACTIONS[action](before)
        return
    after, record = ACTIONS[action](before)
    assert after.revision == before.revision + 1 == record.revision
    assert after.phase is RESULT.get(action, phase)
    assert (record.from_phase, record.to_phase) == (phase.value, after.phase.value)
    assert (after.actor, record.actor, after.updated_at, record.at) == ("op", "op", T0, T0)


def test_set_share_out_of_range_is_refused() -> None:
    with pytest.raises(TransitionError, match=r"outside 0\.\.10000"):
        sm.set_share(in_phase(Phase.RAMPING), BUCKETS + 1, T0, "op")


def test_start_opens_the_initial_share_and_schedules_the_first_step() -> None:
    state, record = sm.start(RolloutState("r"), POLICY, T0, "alice")
    assert (state.stage, state.share, state.next_step_at) == (1, 10 * PCT, T0 + 2 * HOUR)
    assert (record.from_share, record.to_share, record.reason) == ("0%", "10%", "start")


def test_pause_stops_the_clock_and_resume_restarts_it_at_the_same_share() -> None:
    paused, _ = sm.pause(in_phase(Phase.RAMPING), T0, "op")
    assert paused.next_step_at is None and paused.share == 20 * PCT
    resumed, _ = sm.resume(paused, POLICY, T0 + HOUR, "op")
    assert resumed.share == 20 * PCT and resumed.next_step_at == T0 + 3 * HOUR


def test_resume_after_rollback_returns_to_the_pre_rollback_share() -> None:
    ramping = replace(in_phase(Phase.RAMPING), share=30 * PCT)
    back, _ = sm.rollback(ramping, POLICY, T0, "op")
    assert (back.share, back.resume_share) == (0, 30 * PCT)
    again, _ = sm.resume(back, POLICY, T0, "op")
    assert again.share == 30 * PCT


def test_resume_after_a_second_rollback_uses_the_share_before_that_one() -> None:
    """Rolled back at 30 %, resumed, lowered by hand to 10 %, rolled back again: resume
    returns to 10 %, not to the stale 30 %."""
    state = replace(in_phase(Phase.RAMPING), share=30 * PCT)
    state, _ = sm.rollback(state, POLICY, T0, "op")
    state, _ = sm.resume(state, POLICY, T0, "op")
    state, _ = sm.set_share(state, 10 * PCT, T0, "op")
    state, _ = sm.rollback(state, POLICY, T0, "op")
    state, _ = sm.resume(state, POLICY, T0, "op")
    assert state.share == 10 * PCT


def test_resume_after_a_rollback_from_pending_opens_the_initial_share() -> None:
    back, _ = sm.rollback(RolloutState("r"), POLICY, T0, "op")
    again, _ = sm.resume(back, POLICY, T0, "op")
    assert again.share == POLICY.initial_share


def test_rollback_goes_to_the_policy_rollback_share() -> None:
    policy = replace(POLICY, rollback_share=5 * PCT)
    back, record = sm.rollback(in_phase(Phase.RAMPING), policy, T0, "op")
    assert back.share == 5 * PCT and record.to_share == "5%"


# ---- tick ------------------------------------------------------------------------------

FAILED = {"v2-p95": {"verdict": "fail"}, "v2-errors": {"verdict": "pass"}}


@pytest.mark.parametrize("phase", [Phase.RAMPING, Phase.PAUSED])
def test_a_breach_rolls_back_and_names_the_failing_guards(phase: Phase) -> None:
    change = sm.tick(in_phase(phase), POLICY, T0, Verdict.FAIL, FAILED)
    assert change is not None
    state, record = change
    assert state.phase is Phase.ROLLED_BACK and state.share == 0
    assert record.reason == "guard breach: v2-p95" and record.actor == "controller"
    assert record.guards == FAILED


@pytest.mark.parametrize("phase", [Phase.PENDING, Phase.ROLLED_BACK, Phase.COMPLETED])
def test_a_breach_outside_ramping_or_paused_changes_nothing(phase: Phase) -> None:
    assert sm.tick(in_phase(phase), POLICY, T0, Verdict.FAIL, FAILED) is None


def test_hold_or_pass_before_the_step_is_due_changes_nothing() -> None:
    ramping = in_phase(Phase.RAMPING)  # due at T0 + 1 h
    assert sm.tick(ramping, POLICY, T0 + HOUR, Verdict.HOLD) is None
    assert sm.tick(ramping, POLICY, T0 + HOUR - 1, Verdict.PASS) is None


def test_a_due_step_with_every_guard_passing_advances_one_stage() -> None:
    change = sm.tick(in_phase(Phase.RAMPING), POLICY, T0 + HOUR, Verdict.PASS)
    assert change is not None
    state, record = change
    assert (state.stage, state.share, state.next_step_at) == (3, 30 * PCT, T0 + 3 * HOUR)
    assert record.reason == "step to 30%"


def test_a_due_step_inside_a_freeze_window_waits() -> None:
    policy = replace(POLICY, freeze=(FreezeWindow(dt.time(8, 0), dt.time(10, 0)),))
    ramping = replace(in_phase(Phase.RAMPING), next_step_at=T0)
    assert sm.tick(ramping, policy, T0 + 60, Verdict.PASS) is None  # 08:01 UTC
    assert sm.tick(ramping, policy, T0 + 2 * HOUR, Verdict.PASS) is not None  # 10:00


def test_the_last_step_completes_the_rollout() -> None:
    almost = replace(in_phase(Phase.RAMPING), share=95 * PCT)
    change = sm.tick(almost, POLICY, T0 + HOUR, Verdict.PASS)
    assert change is not None
    assert change[0].phase is Phase.COMPLETED and change[0].share == BUCKETS
    assert change[0].next_step_at is None


@given(
    initial=st.integers(1, BUCKETS // 10),
    step=st.integers(BUCKETS // 200, BUCKETS),  # 0.5 % .. 100 %
)
def test_the_ramp_only_climbs_never_more_than_double_and_ends_at_100(
    initial: int, step: int
) -> None:
    policy = replace(POLICY, initial_share=initial, step=step)
    state, _ = sm.start(RolloutState("r"), policy, T0, "op")
    now, shares = T0, [state.share]
    while state.phase is Phase.RAMPING:
        now += policy.step_interval
        change = sm.tick(state, policy, now, Verdict.PASS)
        assert change is not None
        state = change[0]
        shares.append(state.share)
        assert len(shares) <= 220
    assert state.phase is Phase.COMPLETED and shares[-1] == BUCKETS
    for before, after in itertools.pairwise(shares):
        assert before < after <= min(2 * before, before + step, BUCKETS)


def test_state_round_trips_through_json() -> None:
    state = in_phase(Phase.RAMPING)
    assert RolloutState.from_json(state.to_json()) == state
