"""The rollout state machine, pure: every operation takes a state and returns the next.

    pending --start--> ramping(stage k) <--pause/resume--> paused
    ramping|paused --guard breach or rollback--> rolled_back --resume--> ramping
    any but completed --promote (or the last step)--> completed (v2 is the default)

Each change bumps ``revision`` (the store compares it to refuse lost updates) and
yields an audit ``Transition``. ``TransitionError`` says why a request is refused.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from typing import Any

from extproc.core.bucket import BUCKETS
from extproc.core.model import percent
from extproc.rollout.policy import Policy


class Phase(StrEnum):
    PENDING = "pending"
    RAMPING = "ramping"
    PAUSED = "paused"
    ROLLED_BACK = "rolled_back"
    COMPLETED = "completed"


class Verdict(StrEnum):
    PASS = "pass"
    HOLD = "hold"  # too few samples: neither advance nor roll back
    FAIL = "fail"


class TransitionError(ValueError):
    """A request that the current phase does not allow; nothing was changed."""


@dataclass(frozen=True, slots=True)
class RolloutState:
    rollout: str
    revision: int = 0
    phase: Phase = Phase.PENDING
    stage: int = 0
    share: int = 0  # buckets of the default population on v2
    resume_share: int = 0  # where 'resume' goes after a rollback
    next_step_at: float | None = None  # unix seconds
    updated_at: float = 0.0
    reason: str = "created"
    actor: str = "system"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RolloutState:
        fields = dict(data)
        fields["phase"] = Phase(fields["phase"])
        return cls(**fields)


@dataclass(frozen=True, slots=True)
class Transition:
    """One audit-log entry. ``reason`` is what the system did and why, in its own words
    (the action: ``rollback``, ``set-share 20%``, ``step to 30%``, ``guard breach: p95``);
    ``operator_reason`` is the operator's own text given with the action ('' if none, and
    always '' for the controller's own steps)."""

    at: float
    rollout: str
    revision: int
    from_phase: str
    to_phase: str
    from_share: str
    to_share: str
    stage: int
    reason: str
    actor: str
    guards: dict[str, Any] = field(default_factory=dict)
    operator_reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


Change = tuple[RolloutState, Transition]


def _change(
    old: RolloutState,
    new: RolloutState,
    now: float,
    reason: str,
    actor: str,
    guards: dict[str, Any] | None = None,
) -> Change:
    new = replace(new, revision=old.revision + 1, updated_at=now, reason=reason, actor=actor)
    record = Transition(
        at=now,
        rollout=old.rollout,
        revision=new.revision,
        from_phase=old.phase.value,
        to_phase=new.phase.value,
        from_share=percent(old.share),
        to_share=percent(new.share),
        stage=new.stage,
        reason=reason,
        actor=actor,
        guards=guards or {},
    )
    return new, record


def _require(state: RolloutState, allowed: tuple[Phase, ...], action: str) -> None:
    if state.phase not in allowed:
        names = ", ".join(p.value for p in allowed)
        raise TransitionError(
            f"cannot {action} a rollout that is {state.phase.value} (allowed from: {names})"
        )


def start(state: RolloutState, policy: Policy, now: float, actor: str) -> Change:
    _require(state, (Phase.PENDING,), "start")
    new = replace(
        state,
        phase=Phase.RAMPING,
        stage=1,
        share=policy.initial_share,
        next_step_at=now + policy.step_interval,
    )
    return _change(state, new, now, "start", actor)


def pause(state: RolloutState, now: float, actor: str) -> Change:
    _require(state, (Phase.RAMPING,), "pause")
    return _change(
        state, replace(state, phase=Phase.PAUSED, next_step_at=None), now, "pause", actor
    )


def resume(state: RolloutState, policy: Policy, now: float, actor: str) -> Change:
    """Paused: ramp on from the same share. Rolled back: back to the share before the
    rollback; with the same salt the same users return to v2."""
    _require(state, (Phase.PAUSED, Phase.ROLLED_BACK), "resume")
    share = (
        state.share
        if state.phase is Phase.PAUSED
        else max(state.resume_share, policy.initial_share)
    )
    new = replace(state, phase=Phase.RAMPING, share=share, next_step_at=now + policy.step_interval)
    return _change(state, new, now, "resume", actor)


def rollback(
    state: RolloutState,
    policy: Policy,
    now: float,
    actor: str,
    reason: str = "rollback",
    guards: dict[str, Any] | None = None,
) -> Change:
    _require(state, (Phase.PENDING, Phase.RAMPING, Phase.PAUSED, Phase.COMPLETED), "roll back")
    new = replace(
        state,
        phase=Phase.ROLLED_BACK,
        share=policy.rollback_share,
        resume_share=state.share,
        next_step_at=None,
    )
    return _change(state, new, now, reason, actor, guards)


def promote(state: RolloutState, now: float, actor: str) -> Change:
    _require(state, (Phase.PENDING, Phase.RAMPING, Phase.PAUSED, Phase.ROLLED_BACK), "promote")
    new = replace(state, phase=Phase.COMPLETED, share=BUCKETS, next_step_at=None)
    return _change(state, new, now, "promote", actor)


def set_share(state: RolloutState, share: int, now: float, actor: str) -> Change:
    _require(state, (Phase.RAMPING, Phase.PAUSED, Phase.ROLLED_BACK), "set the share of")
    if not 0 <= share <= BUCKETS:
        raise TransitionError(f"share {share} buckets is outside 0..{BUCKETS}")
    return _change(state, replace(state, share=share), now, f"set-share {percent(share)}", actor)


def tick(
    state: RolloutState,
    policy: Policy,
    now: float,
    verdict: Verdict,
    guards: dict[str, Any] | None = None,
) -> Change | None:
    """The controller's step: roll back on a breach (never frozen), advance when due,
    not frozen and every guard passes; otherwise nothing."""
    if verdict is Verdict.FAIL and state.phase in (Phase.RAMPING, Phase.PAUSED):
        failed = sorted(n for n, g in (guards or {}).items() if g.get("verdict") == "fail")
        return rollback(
            state, policy, now, "controller", f"guard breach: {', '.join(failed)}", guards
        )
    if state.phase is not Phase.RAMPING or state.next_step_at is None:
        return None
    if now < state.next_step_at or verdict is not Verdict.PASS:
        return None
    if policy.frozen_at(dt.datetime.fromtimestamp(now, dt.UTC)):
        return None
    share = policy.next_share(state.share)
    if share >= BUCKETS:
        new = replace(
            state, phase=Phase.COMPLETED, stage=state.stage + 1, share=BUCKETS, next_step_at=None
        )
        return _change(state, new, now, "ramp complete", "controller", guards)
    new = replace(
        state, stage=state.stage + 1, share=share, next_step_at=now + policy.step_interval
    )
    return _change(state, new, now, f"step to {percent(share)}", "controller", guards)
