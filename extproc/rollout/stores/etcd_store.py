"""The rollout state store on etcd: one state for a fleet of sidecars and controllers.

Keys under the rollout's prefix (``etcd://members/<prefix>``):

    <prefix>/state                    the RolloutState as JSON
    <prefix>/audit/<revision:012d>    the Transition that produced that revision, as JSON
    <prefix>/leader                   the leading controller (see leader.py), on a lease
    <prefix>/clock                    the scaled clock's origin, if one is used (clock.py)

Contract (that of :class:`~extproc.rollout.stores.state_store.StateStore`):

- ``write(change, expected_revision)`` is compare-and-swap: it reads the state, refuses with
  ``Conflict`` if its revision is not ``expected_revision``, then commits the new state and
  its audit entry in ONE etcd transaction that holds only if the state key was not modified
  since that read and the audit entry does not exist yet. So of two writers starting from the
  same revision exactly one wins, and the audit log has each transition once, in order.
- With a ``fence`` (a leader's), the same transaction also requires that the leader key is
  still the one this controller created: a deposed leader cannot write, even mid-check
  (``FencedOut``, a Conflict).
- A write whose outcome was unknown (a member died mid-request) is retried on another
  member; if the retry finds its own state and audit entry already there, it succeeded.
- ``create`` writes only if no state exists. ``audit(limit)`` is the last ``limit`` entries,
  oldest first. Every method blocks (worker threads); EtcdUnavailable (an OSError) when no
  member can serve it, ValueError when the stored state is not a rollout state.
- ``watch_state(on_state)`` follows the state for a sidecar (see etcd_watch.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from extproc.addresses import EtcdTarget
from extproc.rollout.clock import ClockOrigin
from extproc.rollout.state import Change, RolloutState
from extproc.rollout.stores.etcd_session import EtcdSession
from extproc.rollout.stores.etcd_types import Compare, Entry, Put
from extproc.rollout.stores.etcd_watch import StateWatch
from extproc.rollout.stores.state_store import Conflict

Fence = Callable[[], int]  # the leader key's create revision, or raises FencedOut


class FencedOut(Conflict):
    """This controller does not (or no longer) hold the leadership; it must not write."""


def encode(data: dict[str, Any]) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


def _holds(found: dict[str, Entry | None], wanted: dict[str, bytes]) -> bool:
    return all((e := found.get(k)) is not None and e.value == v for k, v in wanted.items())


def decode_state(entry: Entry) -> RolloutState:
    try:
        return RolloutState.from_json(json.loads(entry.value))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"etcd key {entry.key}: not a rollout state: {exc}") from exc


class EtcdStateStore:
    def __init__(self, target: EtcdTarget, session: EtcdSession | None = None) -> None:
        """Opens its own session unless one is given (then the caller closes it)."""
        self.target = target
        self.session = session or EtcdSession(target.endpoints)
        self._owns_session = session is None
        self.state_key = target.key("state")
        self.audit_prefix = target.key("audit/")
        self.leader_key = target.key("leader")
        self.clock_key = target.key("clock")
        self.fence: Fence | None = None

    def __repr__(self) -> str:
        return f"EtcdStateStore({self.target.url()})"

    def close(self) -> None:
        if self._owns_session:
            self.session.close()

    def read(self) -> RolloutState | None:
        entry, _ = self.session.call(lambda c: c.get(self.state_key))
        return decode_state(entry) if entry is not None else None

    def create(self, state: RolloutState) -> bool:
        """Write ``state`` only if no state exists yet; True if it was written."""
        put = Put(self.state_key, encode(state.to_json()))
        absent = Compare(self.state_key, "create", 0)
        result = self.session.call(lambda c: c.txn([absent], [put]))
        return result.succeeded

    def write(self, change: Change, expected_revision: int) -> None:
        state, transition = change
        entry, _ = self.session.call(lambda c: c.get(self.state_key))
        current = decode_state(entry) if entry is not None else None
        revision = current.revision if current is not None else 0
        if revision != expected_revision:
            raise Conflict(f"state is at revision {revision}, not {expected_revision}: re-read it")
        audit_key = f"{self.audit_prefix}{state.revision:012d}"
        ours = {self.state_key: encode(state.to_json()), audit_key: encode(transition.to_json())}
        compares = [
            Compare(self.state_key, "mod", entry.mod_revision if entry is not None else 0),
            Compare(audit_key, "create", 0),
        ]
        fenced = self.fence() if self.fence is not None else None
        if fenced is not None:
            compares.append(Compare(self.leader_key, "create", fenced))
        puts = [Put(key, value) for key, value in ours.items()]
        reads = [self.state_key, audit_key, self.leader_key]
        result = self.session.call(lambda c: c.txn(compares, puts, reads))
        if result.succeeded:
            return
        if _holds(result.reads, ours):
            return  # an earlier try of this very write went through before its member died
        leader = result.reads[self.leader_key]
        if fenced is not None and (leader is None or leader.create_revision != fenced):
            raise FencedOut("lost the leadership before writing; the new leader decides")
        raise Conflict(
            f"state moved on from revision {expected_revision} while writing: re-read it"
        )

    def clock_origin(self, proposed: ClockOrigin | None) -> ClockOrigin | None:
        """The stored origin, or ``proposed`` created now if none is (the first replica's
        wins: a create-if-absent transaction)."""
        if proposed is not None:
            put = Put(self.clock_key, encode(proposed.to_json()))
            absent = Compare(self.clock_key, "create", 0)
            result = self.session.call(lambda c: c.txn([absent], [put], [self.clock_key]))
            if result.succeeded:
                return proposed
            entry = result.reads.get(self.clock_key)
        else:
            entry, _ = self.session.call(lambda c: c.get(self.clock_key))
        if entry is None:
            return None
        try:
            return ClockOrigin.from_json(json.loads(entry.value))
        except ValueError as exc:
            raise ValueError(f"etcd key {entry.key}: {exc}") from None

    def audit(self, limit: int = 20) -> list[dict[str, Any]]:
        entries = self.session.call(lambda c: c.last(self.audit_prefix, limit))
        return [json.loads(e.value) for e in entries]

    def watch_state(
        self,
        on_state: Callable[[RolloutState], None],
        on_error: Callable[[Exception], None] | None = None,
    ) -> StateWatch:
        """Follow the state: ``on_state`` gets every new one (on the session's thread)."""
        return StateWatch(self.session, self.state_key, on_state, on_error)
