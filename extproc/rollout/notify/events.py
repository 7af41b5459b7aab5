"""One notification event per rollout transition: the model, pure.

An :class:`Event` is built from an audit-log transition (anything with the fields of
``extproc.rollout.state.Transition``) or from a change of leadership. Its ``kind`` names
what happened in operators' words:

=========== ==========================================================================
start       pending -> ramping (the initial share)
step        the share changed while ramping or paused (the ramp's step, or set-share)
pause       ramping -> paused
resume      paused | rolled_back -> ramping
rollback    -> rolled_back (a guard breach, with the guard figures, or an operator)
promote     -> completed by an operator
completed   -> completed by the ramp's last step
leadership  this controller replica became the leader (etcd fleets)
=========== ==========================================================================

``id`` (``rollout/r<revision>/<kind>``) is the same on every retry and every replica: a
receiver deduplicates on it (the webhook sends it as ``X-TTS-Canary-Delivery``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

SCHEMA = "tts-canary.notification/v1"


class TransitionLike(Protocol):
    """The audit-log transition (extproc.rollout.state.Transition), as read here."""

    @property
    def at(self) -> float: ...
    @property
    def rollout(self) -> str: ...
    @property
    def revision(self) -> int: ...
    @property
    def from_phase(self) -> str: ...
    @property
    def to_phase(self) -> str: ...
    @property
    def from_share(self) -> str: ...
    @property
    def to_share(self) -> str: ...
    @property
    def stage(self) -> int: ...
    @property
    def reason(self) -> str: ...
    @property
    def actor(self) -> str: ...
    @property
    def guards(self) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class Event:
    kind: str
    rollout: str
    revision: int
    at: float  # unix seconds of the transition (the controller's clock)
    from_phase: str
    to_phase: str
    from_share: str
    to_share: str
    stage: int
    actor: str
    reason: str
    guards: dict[str, Any] = field(default_factory=dict)  # figures by guard name
    controller: str = ""  # the replica that announced it

    @property
    def id(self) -> str:
        suffix = f"/{self.actor}" if self.kind == "leadership" else ""
        return f"{self.rollout}/r{self.revision}/{self.kind}{suffix}"

    def breached(self) -> list[str]:
        """Names of the guards whose verdict was fail, sorted."""
        return sorted(n for n, g in self.guards.items() if g.get("verdict") == "fail")

    def to_json(self) -> dict[str, Any]:
        """The webhook body (schema tts-canary.notification/v1; docs/notifications.md)."""
        body = {"schema": SCHEMA, "id": self.id, **asdict(self)}
        body["time"] = iso_time(self.at)
        return body


def kind_of(from_phase: str, to_phase: str, reason: str) -> str:
    """The event kind of a transition (see the module docstring)."""
    if to_phase == "rolled_back":
        return "rollback"
    if to_phase == "completed":
        return "promote" if reason == "promote" else "completed"
    if to_phase == "paused" and from_phase == "ramping":
        return "pause"
    if to_phase == "ramping" and from_phase == "pending":
        return "start"
    if to_phase == "ramping" and from_phase in ("paused", "rolled_back"):
        return "resume"
    return "step"


def from_transition(t: TransitionLike, controller: str = "") -> Event:
    return Event(
        kind=kind_of(t.from_phase, t.to_phase, t.reason),
        rollout=t.rollout,
        revision=t.revision,
        at=t.at,
        from_phase=t.from_phase,
        to_phase=t.to_phase,
        from_share=t.from_share,
        to_share=t.to_share,
        stage=t.stage,
        actor=t.actor,
        reason=t.reason,
        guards=dict(t.guards),
        controller=controller,
    )


def leadership(
    rollout: str, revision: int, phase: str, share: str, stage: int, leader: str, at: float
) -> Event:
    """``leader`` took over the rollout, found at ``revision`` / ``phase`` / ``share``."""
    return Event(
        kind="leadership",
        rollout=rollout,
        revision=revision,
        at=at,
        from_phase=phase,
        to_phase=phase,
        from_share=share,
        to_share=share,
        stage=stage,
        actor=leader,
        reason=f"{leader} now leads the rollout controller",
        controller=leader,
    )


def iso_time(at: float) -> str:
    """RFC 3339 UTC with milliseconds, e.g. 2026-12-06T18:40:00.123Z."""
    moment = dt.datetime.fromtimestamp(at, dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def guard_summary(event: Event) -> str:
    """'v2-p95 fail 1.02 (threshold 0.8, n=40), ...' for the breached guards (all the guards
    if none failed); '' without figures."""
    parts = []
    for name in event.breached() or sorted(event.guards):
        g = event.guards[name]
        value, threshold = g.get("value"), g.get("threshold")
        figure = f"{value:.4g}" if isinstance(value, int | float) else "no value"
        limit = f"threshold {threshold:.4g}, " if isinstance(threshold, int | float) else ""
        parts.append(f"{name} {g.get('verdict', '?')} {figure} ({limit}n={g.get('samples', 0)})")
    return ", ".join(parts)
