"""What ``status`` says about a rollout, and how a failed check is classed. Pure.

``status_json(...)`` builds the JSON-ready dict that ``Controller.status`` returns and the
admin API's wire module turns into a message: times are unix seconds of the controller's
clock (``now``, the calendar, not rounded), shares percent strings with ``*_buckets``
beside them, ``operator_reason`` the operator's words of the last change (from its audit
entry), ``leadership`` who leads (``NO_ELECTION`` without an election).
``failure_class(exc)`` names the class a failed check or change is counted under.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from extproc.core.model import percent
from extproc.rollout.clock import Clock
from extproc.rollout.guards.judge import Evaluation
from extproc.rollout.policy import Policy
from extproc.rollout.state import Phase, RolloutState
from extproc.rollout.stores.state_store import Conflict

#: ``status()["leadership"]`` without an election (a file store: this replica decides).
NO_ELECTION: dict[str, Any] = {
    "elected": False,
    "replica": "",
    "replica_leads": True,
    "leader": None,
    "leader_admin": "",
    "leader_since": None,
    "term": None,
    "faults": {},
    "outage": "",
}


@dataclass(frozen=True, slots=True)
class Counters:
    checks: int
    conflicts: int
    failures: Mapping[str, int]
    interval: float


def status_json(
    current: RolloutState,
    policy: Policy,
    audit: Sequence[dict[str, Any]],
    clock: Clock,
    evaluation: Evaluation | None,
    counters: Counters,
    leadership: Mapping[str, Any],
) -> dict[str, Any]:
    now = clock.now()
    last = next((t for t in audit if t.get("revision") == current.revision), None)
    ramping = current.phase is Phase.RAMPING and current.next_step_at is not None
    return {
        "rollout": current.rollout,
        "phase": current.phase.value,
        "stage": current.stage,
        "share": percent(current.share),
        "share_buckets": current.share,
        "resume_share": percent(current.resume_share),
        "revision": current.revision,
        "next_share": percent(policy.next_share(current.share)) if ramping else None,
        "next_step_at": current.next_step_at,
        "next_step_in": (
            max(0.0, current.next_step_at - now)
            if ramping and current.next_step_at is not None
            else None
        ),
        "frozen_now": policy.frozen_at(dt.datetime.fromtimestamp(now, dt.UTC)),
        "now": now,
        "clock_speed": float(getattr(clock, "speed", 1.0)),
        "updated_at": current.updated_at,
        "reason": current.reason,
        "operator_reason": (last or {}).get("operator_reason", ""),
        "actor": current.actor,
        "verdict": evaluation.verdict.value if evaluation else None,
        "checked_at": evaluation.at if evaluation else None,
        "guards": evaluation.guards_json() if evaluation else {},
        "checks": counters.checks,
        "conflicts": counters.conflicts,
        "check_failures": dict(counters.failures),
        "interval": counters.interval,
        "leadership": dict(leadership),
        "transitions": list(audit),
    }


def failure_class(exc: BaseException) -> str:
    """The class of a failed check or change: a store's own (``exc.fault``, e.g. etcd's
    ``quorum_lost``, ``unreachable``, ``timeout``, ``refused``; see stores/etcd_faults.py),
    else ``conflict``, ``store_unavailable`` (OSError), ``bad_state`` (ValueError) or
    ``unexpected``."""
    fault = getattr(exc, "fault", None)
    if isinstance(fault, str) and fault:
        return fault
    if isinstance(exc, Conflict):
        return "conflict"
    if isinstance(exc, OSError):
        return "store_unavailable"
    if isinstance(exc, ValueError):
        return "bad_state"
    return "unexpected"
