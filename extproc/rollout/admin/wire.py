"""The admin API's edge: protobuf to plain data and back, in one place.

Server side: a ``RolloutState`` or the controller's status dict -> messages. Client side:
messages -> JSON-ready dicts (what ``extproc rollout ... --json`` prints and the table
reads). Request fields are validated here (``parse_share``, ``check_actor``,
``check_reason``); each raises ValueError with a message for the operator.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from extproc.core.bucket import BUCKETS
from extproc.core.model import percent
from extproc.gen.tts_canary.admin.v1 import rollout_admin_pb2 as pb
from extproc.rollout.state import RolloutState

MAX_ACTOR = 128
MAX_REASON = 512
MAX_TRANSITIONS = 100
DEFAULT_TRANSITIONS = 10
_DECIMAL = re.compile(r"[+-]?[0-9]+(\.[0-9]+)?")


# ---- requests ----------------------------------------------------------------------------


def parse_share(text: str) -> int:
    """'12.5%' -> 1250 buckets (basis points). The rules file's form: a percentage from 0 %
    to 100 % in 0.01 % steps, '%' required."""
    value = text.strip()
    if not value.endswith("%"):
        raise ValueError(f"share {text!r} is not a percentage; write it like '12.5%'")
    if not _DECIMAL.fullmatch(value[:-1].strip()):
        raise ValueError(f"share {text!r} is not a number; write it like '12.5%'")
    share = Decimal(value[:-1].strip())
    if not Decimal(0) <= share <= Decimal(100):
        raise ValueError(f"share {text!r} is out of range; allowed 0% to 100%")
    buckets = share * BUCKETS / 100
    if buckets != buckets.to_integral_value():
        raise ValueError(f"share {text!r} is finer than the 0.01% resolution")
    return int(buckets)


def check_actor(actor: str) -> str:
    """The caller's actor, stripped: required, printable, at most MAX_ACTOR characters."""
    actor = actor.strip()
    if not actor:
        raise ValueError("an actor is required (who asks, e.g. 'alice@cli')")
    if len(actor) > MAX_ACTOR or not actor.isprintable():
        raise ValueError(f"the actor must be at most {MAX_ACTOR} printable characters")
    return actor


def check_reason(reason: str) -> str:
    """The caller's reason, stripped: optional, printable, at most MAX_REASON characters."""
    reason = reason.strip()
    if len(reason) > MAX_REASON or not reason.isprintable():
        raise ValueError(f"the reason must be at most {MAX_REASON} printable characters")
    return reason


def transitions_wanted(requested: int) -> int:
    """StatusRequest.transitions: 0 means DEFAULT_TRANSITIONS; at most MAX_TRANSITIONS."""
    if requested > MAX_TRANSITIONS:
        raise ValueError(f"at most {MAX_TRANSITIONS} transitions, not {requested}")
    return requested or DEFAULT_TRANSITIONS


# ---- server side: plain -> messages --------------------------------------------------------


def state_message(state: RolloutState, operator_reason: str = "") -> pb.RolloutState:
    return pb.RolloutState(
        operator_reason=operator_reason,
        rollout=state.rollout,
        phase=_phase(state.phase.value),
        stage=state.stage,
        share=percent(state.share),
        share_basis_points=state.share,
        revision=state.revision,
        next_step_time=_timestamp(state.next_step_at),
        update_time=_timestamp(state.updated_at),
        reason=state.reason,
        actor=state.actor,
        resume_share=percent(state.resume_share),
    )


def status_message(status: Mapping[str, Any]) -> pb.StatusResponse:
    """The controller's ``status()`` dict (see ``Controller.status``) as a message."""
    state = pb.RolloutState(
        rollout=status["rollout"],
        phase=_phase(status["phase"]),
        stage=status["stage"],
        share=status["share"],
        share_basis_points=status["share_buckets"],
        revision=status["revision"],
        next_step_time=_timestamp(status["next_step_at"]),
        update_time=_timestamp(status["updated_at"]),
        reason=status["reason"],
        operator_reason=status.get("operator_reason", ""),
        actor=status["actor"],
        resume_share=status["resume_share"],
    )
    next_in = status["next_step_in"]
    return pb.StatusResponse(
        state=state,
        time_to_next_step=_duration(next_in) if next_in is not None else None,
        frozen=bool(status["frozen_now"]),
        guards=_figures(status["guards"]),
        verdict=_verdict(status["verdict"]),
        check_time=_timestamp(status["checked_at"]),
        next_share=status["next_share"] or "",
        transitions=[_transition(t) for t in status["transitions"]],
        leadership=_leadership(status.get("leadership") or {}),
        calendar_time=_timestamp(status["now"]),
        clock_speed=float(status.get("clock_speed", 1.0)),
        check_failures=status.get("check_failures") or {},
    )


def _leadership(lead: Mapping[str, Any]) -> pb.Leadership:
    return pb.Leadership(
        elected=bool(lead.get("elected")),
        replica=lead.get("replica") or "",
        replica_leads=bool(lead.get("replica_leads")),
        leader=lead.get("leader") or "",
        leader_admin=lead.get("leader_admin") or "",
        leader_since=_timestamp(lead.get("leader_since")),
        term=lead.get("term") or 0,
        faults=lead.get("faults") or {},
        outage=lead.get("outage") or "",
    )


def _transition(entry: Mapping[str, Any]) -> pb.Transition:
    """One audit-log entry (``Transition.to_json()``)."""
    return pb.Transition(
        time=_timestamp(entry["at"]),
        revision=entry["revision"],
        from_phase=_phase(entry["from_phase"]),
        to_phase=_phase(entry["to_phase"]),
        from_share=entry["from_share"],
        to_share=entry["to_share"],
        stage=entry["stage"],
        reason=entry["reason"],
        actor=entry["actor"],
        guards=_figures(entry.get("guards") or {}),
        operator_reason=entry.get("operator_reason", ""),
    )


def _figures(guards: Mapping[str, Mapping[str, Any]]) -> list[pb.GuardFigure]:
    """Figures by guard name (``Evaluation.guards_json()``), in their order."""
    return [
        pb.GuardFigure(
            name=name,
            signal=figure.get("signal", ""),
            cohort=figure.get("cohort", ""),
            verdict=_verdict(figure.get("verdict")),
            value=figure.get("value"),
            threshold=figure.get("threshold", 0.0),
            samples=figure.get("samples", 0),
            min_samples=figure.get("min_samples", 0),
            window=_duration(figure.get("window", 0.0)),
            detail=figure.get("detail", ""),
            compare=_compare(figure) if figure.get("metric") else None,
            source=figure.get("source", ""),
        )
        for name, figure in guards.items()
    ]


def _compare(figure: Mapping[str, Any]) -> pb.CompareFigure:
    return pb.CompareFigure(
        metric=figure["metric"],
        effect_low=figure.get("effect_low"),
        effect_high=figure.get("effect_high"),
        p_value=figure.get("p_value") or 0.0,
        e_value=figure.get("e_value"),
        alpha=figure.get("alpha") or 0.0,
        samples_v2=figure.get("samples_v2") or 0,
        samples_v1=figure.get("samples_v1") or 0,
    )


def _phase(name: str) -> pb.Phase:
    try:
        return pb.Phase.Value(f"PHASE_{name.upper()}")
    except ValueError:
        return pb.PHASE_UNSPECIFIED


def _verdict(name: str | None) -> pb.Verdict:
    try:
        return pb.Verdict.Value(f"VERDICT_{(name or '').upper()}")
    except ValueError:
        return pb.VERDICT_UNSPECIFIED


def _timestamp(seconds: float | None) -> Timestamp | None:
    if seconds is None:
        return None
    stamp = Timestamp()
    stamp.FromNanoseconds(round(seconds * 1e9))
    return stamp


def _duration(seconds: float) -> Duration:
    span = Duration()
    span.FromNanoseconds(round(seconds * 1e9))
    return span


# ---- client side: messages -> plain ---------------------------------------------------------


def state_json(state: pb.RolloutState) -> dict[str, Any]:
    return {
        "rollout": state.rollout,
        "phase": phase_name(state.phase),
        "stage": state.stage,
        "share": state.share,
        "share_basis_points": state.share_basis_points,
        "resume_share": state.resume_share,
        "revision": state.revision,
        "next_step_at": _iso(state, "next_step_time"),
        "updated_at": _iso(state, "update_time"),
        "reason": state.reason,
        "operator_reason": state.operator_reason,
        "actor": state.actor,
    }


def status_json(status: pb.StatusResponse) -> dict[str, Any]:
    return {
        **state_json(status.state),
        "next_share": status.next_share or None,
        "next_step_in_seconds": (
            status.time_to_next_step.ToNanoseconds() / 1e9
            if status.HasField("time_to_next_step")
            else None
        ),
        "frozen": status.frozen,
        "verdict": verdict_name(status.verdict),
        "checked_at": _iso(status, "check_time"),
        "guards": [figure_json(f) for f in status.guards],
        "transitions": [transition_json(t) for t in status.transitions],
        "leadership": leadership_json(status.leadership),
        "calendar_time": _iso(status, "calendar_time", "microseconds"),
        "calendar_time_unix": _seconds(status, "calendar_time"),
        "clock_speed": status.clock_speed,
        "check_failures": dict(status.check_failures),
    }


def leadership_json(lead: pb.Leadership) -> dict[str, Any]:
    return {
        "elected": lead.elected,
        "replica": lead.replica,
        "replica_leads": lead.replica_leads,
        "leader": lead.leader or None,
        "leader_admin": lead.leader_admin,
        "leader_since": _iso(lead, "leader_since", "microseconds"),
        "term": lead.term,
        "faults": dict(lead.faults),
        "outage": lead.outage,
    }


def figure_json(figure: pb.GuardFigure) -> dict[str, Any]:
    return {
        "name": figure.name,
        "signal": figure.signal,
        "cohort": figure.cohort,
        "verdict": verdict_name(figure.verdict),
        "value": figure.value if figure.HasField("value") else None,
        "threshold": figure.threshold,
        "samples": figure.samples,
        "min_samples": figure.min_samples,
        "window_seconds": figure.window.ToNanoseconds() / 1e9,
        "detail": figure.detail,
        **({"source": figure.source} if figure.source else {}),
        **({"compare": compare_json(figure.compare)} if figure.HasField("compare") else {}),
    }


def compare_json(compare: pb.CompareFigure) -> dict[str, Any]:
    return {
        "metric": compare.metric,
        "effect_low": compare.effect_low if compare.HasField("effect_low") else None,
        "effect_high": compare.effect_high if compare.HasField("effect_high") else None,
        "p_value": compare.p_value,
        "e_value": compare.e_value if compare.HasField("e_value") else None,
        "alpha": compare.alpha,
        "samples_v2": compare.samples_v2,
        "samples_v1": compare.samples_v1,
    }


def transition_json(transition: pb.Transition) -> dict[str, Any]:
    return {
        "at": _iso(transition, "time"),
        "revision": transition.revision,
        "from_phase": phase_name(transition.from_phase),
        "to_phase": phase_name(transition.to_phase),
        "from_share": transition.from_share,
        "to_share": transition.to_share,
        "stage": transition.stage,
        "reason": transition.reason,
        "operator_reason": transition.operator_reason,
        "actor": transition.actor,
        "guards": [figure_json(f) for f in transition.guards],
    }


def phase_name(phase: pb.Phase) -> str:
    return pb.Phase.Name(phase).removeprefix("PHASE_").lower()


def verdict_name(verdict: pb.Verdict) -> str | None:
    if verdict == pb.VERDICT_UNSPECIFIED:
        return None
    return pb.Verdict.Name(verdict).removeprefix("VERDICT_").lower()


def _iso(message: Any, field: str, timespec: str = "seconds") -> str | None:
    """An optional Timestamp field as ISO 8601 UTC ('2026-11-25T07:00:00Z'), None if unset;
    ``timespec='microseconds'`` keeps the fraction."""
    if not message.HasField(field):
        return None
    moment = getattr(message, field).ToDatetime(tzinfo=dt.UTC)
    return moment.isoformat(timespec=timespec).replace("+00:00", "Z")


def _seconds(message: Any, field: str) -> float | None:
    """An optional Timestamp field as unix seconds, nothing rounded away but the nanos."""
    if not message.HasField(field):
        return None
    return float(getattr(message, field).ToNanoseconds()) / 1e9
