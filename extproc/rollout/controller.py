"""The rollout controller: observe (guards) -> decide (state machine) -> write (CAS store).

Every check interval the controller refreshes its guard sources, judges every guard,
reads the state from the store and calls ``state.tick``; a change is written with
compare-and-swap on the revision it read. If another writer (a second controller, an
operator through the admin API) got there first, the write is refused, nothing is
retried blindly, and the next check decides again from the new state. A check that fails
(the store unreachable, etcd without quorum, a refused request, a state it cannot read,
anything else) is logged, counted by class in ``failures`` and retried at the next check:
the loop ends only on :meth:`request_stop`. All rollout state
lives in the store, so a restarted controller resumes the same stage and share; only the
guard windows start over (their sources hold until they have samples again).

For the admin API and the CLI, :class:`Controller` offers:

- ``status(transitions=10) -> dict`` : phase, stage, share, revision, time to the next
  step, freeze, the last guard figures and the last transitions of the audit log;
- ``apply(action, actor, share=None, reason="") -> RolloutState`` : start, pause, resume,
  rollback, promote, set-share, through the same CAS store, the operator's ``reason``
  audited beside the action (``operator_reason``), raising ``TransitionError`` (the phase
  does not allow it) or ``ValueError`` (a bad request) with a message for the operator;
- ``status_async`` / ``apply_async``: the same, off the event loop (they do file I/O).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Protocol

from extproc.core.bucket import BUCKETS
from extproc.core.model import percent
from extproc.rollout import state as machine
from extproc.rollout.clock import Clock, SystemClock
from extproc.rollout.guards.comparison import Comparisons
from extproc.rollout.guards.judge import Evaluation, Figure, Source, evaluate, family
from extproc.rollout.policy import Guard, Policy
from extproc.rollout.state import Change, Phase, RolloutState, Transition, TransitionError
from extproc.rollout.status_view import NO_ELECTION, Counters, failure_class, status_json
from extproc.rollout.stores.state_store import Conflict, StateStore

log = logging.getLogger("extproc.rollout.controller")

ACTIONS = ("start", "pause", "resume", "rollback", "promote", "set-share")
APPLY_ATTEMPTS = 5
DEFAULT_INTERVAL = 1.0


class Leadership(Protocol):
    """What the controller needs of a leader election (extproc.rollout.stores.leader)."""

    def is_leader(self) -> bool: ...

    def require_leader(self) -> None:
        """Raise a TransitionError naming the leader unless this replica leads."""
        ...

    def snapshot(self) -> dict[str, Any]:
        """Who leads, since when, whether this replica does (see stores/leader.py)."""
        ...


class TransitionListener(Protocol):
    """Told of every transition this controller wrote (extproc.rollout.notify.Notifier);
    must return at once and never raise."""

    def transition(self, transition: Transition) -> None: ...


class Controller:
    """Runs one rollout's policy against one state store (see the module docstring)."""

    def __init__(
        self,
        policy: Policy,
        store: StateStore,
        sources: Mapping[str, Source],
        *,
        clock: Clock | None = None,
        interval: float = DEFAULT_INTERVAL,
        leadership: Leadership | None = None,
        notifier: TransitionListener | None = None,
    ) -> None:
        """``sources`` maps a guard family (``envoy``, ``promql``; see guards.family) to its
        source; ValueError if a guard of the policy has none, or ``interval`` is not > 0.
        With ``leadership``, checks run and changes are applied only while leading.
        ``notifier`` hears of every transition written (after the write, never blocking)."""
        missing = sorted({family(g) for g in policy.guards} - set(sources))
        if missing:
            raise ValueError(f"policy {policy.source}: no source for {', '.join(missing)} guards")
        if not interval > 0:
            raise ValueError(f"check interval {interval} must be greater than 0")
        self.policy = policy
        self.store = store
        self.sources = dict(sources)
        self.clock = clock or SystemClock()
        self.interval = interval
        self.leadership = leadership
        self.notifier = notifier
        self.checks = 0  # completed checks (tests wait on this counter)
        self.conflicts = 0  # writes refused because the state had moved on
        self.failures: Counter[str] = Counter()  # failed checks by class (failure_class)
        self.last: Evaluation | None = None
        self.comparisons = Comparisons()  # compare guards' memory within a stage
        self._stage = ""  # the stage compare guards test: phase/stage/share last seen
        self._stop_requested = False
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # ---- the loop ---------------------------------------------------------------------

    async def run(self) -> None:
        """Check every ``interval`` (real seconds) until :meth:`request_stop`. The first
        check creates the pending state if the store has none."""
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        if self._stop_requested:
            self._stop.set()
        while not self._stop.is_set():
            began = self.clock.monotonic()
            try:
                if self.leadership is None or self.leadership.is_leader():
                    await self.check()
            except Exception as exc:  # every failure is retried at the next check
                self._failed(exc)
            await self._pause(self.interval - (self.clock.monotonic() - began))
        self._stop_requested = False

    def _failed(self, exc: Exception) -> None:
        kind = failure_class(exc)
        first = self.failures[kind] == 0
        self.failures[kind] += 1
        if kind == "unexpected":
            log.exception("check failed (%s), state unchanged; retrying", kind)
        else:  # the first of a class with its story, the rest shorter
            log.log(
                logging.ERROR if first else logging.WARNING,
                "check failed (%s, %d so far), state unchanged; retrying next check: %s",
                kind,
                self.failures[kind],
                exc,
            )

    def request_stop(self) -> None:
        """Stop :meth:`run` after the current check (or before the first, if it has not
        started yet); safe from any thread."""
        self._stop_requested = True
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)

    async def _pause(self, seconds: float) -> None:
        assert self._stop is not None
        sleeper = asyncio.ensure_future(self.clock.sleep(max(seconds, 0.0)))
        stopper = asyncio.ensure_future(self._stop.wait())
        await asyncio.wait((sleeper, stopper), return_when=asyncio.FIRST_COMPLETED)
        for task in (sleeper, stopper):
            task.cancel()

    async def check(self) -> Transition | None:
        """One check: refresh the sources, judge the guards, tick, write. Returns the
        transition written, if any."""
        await asyncio.gather(*(source.refresh() for source in self.sources.values()))
        evaluation = evaluate(self.policy.guards, self.sources, self.clock.now(), self._compare)
        if self.last is None or self.last.verdict is not evaluation.verdict:
            log.info("guards: %s (%s)", evaluation.verdict.value, _summary(evaluation))
        self.last = evaluation
        try:
            return await asyncio.to_thread(self._tick, evaluation)
        finally:
            self.checks += 1

    def _compare(self, guard: Guard) -> Figure:
        source = self.sources.get(family(guard))
        return self.comparisons.judge(guard, source, self._stage, self.clock.monotonic())

    def _tick(self, evaluation: Evaluation) -> Transition | None:
        current = self.ensure_state()
        self._stage = stage_key(current)
        if current.rollout != self.policy.rollout:
            log.error(
                "state is for rollout %r, the policy for %r: not touching it",
                current.rollout,
                self.policy.rollout,
            )
            return None
        guards = evaluation.guards_json()
        change = machine.tick(current, self.policy, evaluation.at, evaluation.verdict, guards)
        if change is None:
            return None
        try:
            self.store.write(change, current.revision)
        except Conflict as exc:
            self.conflicts += 1
            log.info("state moved on while deciding (%s); deciding again next check", exc)
            return None
        self._stage = stage_key(change[0])
        self._announce(change[1])
        return change[1]

    def _announce(self, transition: Transition) -> None:
        _log_transition(transition)
        if self.notifier is not None:
            self.notifier.transition(transition)

    def ensure_state(self) -> RolloutState:
        """The stored state; a new pending state for the policy's rollout if there is none."""
        current = self.store.read()
        if current is not None:
            return current
        fresh = RolloutState(rollout=self.policy.rollout, updated_at=self.clock.now())
        if self.store.create(fresh):
            log.info("created rollout %r, pending", fresh.rollout)
        created = self.store.read()
        if created is None:
            raise OSError("the state store lost the state it just created")
        return created

    # ---- the switch (admin API / CLI) -------------------------------------------------

    def apply(
        self, action: str, actor: str, share: int | None = None, reason: str = ""
    ) -> RolloutState:
        """Apply an operator's ``action`` (one of ACTIONS) as ``actor``; ``share`` in buckets
        (0..10000, i.e. 0.01 % steps) for ``set-share`` only; ``reason``, the operator's
        words, goes into the audit entry as ``operator_reason``. Returns the new state.

        Raises ValueError for a bad request (unknown action, missing actor, share missing,
        out of range or more than double the current share) and TransitionError when the
        current phase does not allow the action; nothing is written then. A write that
        loses a race is decided again from the new state (up to APPLY_ATTEMPTS times, then
        Conflict). Blocking (file I/O): from an event loop, use :meth:`apply_async`."""
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}; allowed: {', '.join(ACTIONS)}")
        if not actor.strip():
            raise ValueError("an actor (who asks) is required")
        if (share is not None) != (action == "set-share"):
            raise ValueError("a share is required for set-share and only for it")
        for _ in range(APPLY_ATTEMPTS):
            if self.leadership is not None:
                self.leadership.require_leader()
            current = self.ensure_state()
            if current.rollout != self.policy.rollout:
                raise ValueError(
                    f"the state is for rollout {current.rollout!r}, "
                    f"the policy for {self.policy.rollout!r}"
                )
            state, transition = self._decide(action, current, actor, share)
            change = (state, replace(transition, operator_reason=reason.strip()))
            try:
                self.store.write(change, current.revision)
            except Conflict:
                self.conflicts += 1
                continue
            self._announce(change[1])
            return change[0]
        raise Conflict(f"the state kept changing; {action} not applied, try again")

    def _decide(self, action: str, current: RolloutState, actor: str, share: int | None) -> Change:
        now, policy = self.clock.now(), self.policy
        if action == "start":
            return machine.start(current, policy, now, actor)
        if action == "pause":
            return machine.pause(current, now, actor)
        if action == "resume":
            return machine.resume(current, policy, now, actor)
        if action == "rollback":
            return machine.rollback(current, policy, now, actor)
        if action == "promote":
            return machine.promote(current, now, actor)
        assert share is not None
        check_manual_share(policy, current, share)
        return machine.set_share(current, share, now, actor)

    async def apply_async(
        self, action: str, actor: str, share: int | None = None, reason: str = ""
    ) -> RolloutState:
        """:meth:`apply` in a worker thread."""
        return await asyncio.to_thread(self.apply, action, actor, share, reason)

    def status(self, transitions: int = 10) -> dict[str, Any]:
        """The rollout as the operator sees it (see ``status_view.status_json``)."""
        current = self.store.read() or RolloutState(rollout=self.policy.rollout)
        return status_json(
            current,
            self.policy,
            self.store.audit(transitions),
            self.clock,
            self.last,
            Counters(self.checks, self.conflicts, dict(self.failures), self.interval),
            self.leadership.snapshot() if self.leadership is not None else NO_ELECTION,
        )

    async def status_async(self, transitions: int = 10) -> dict[str, Any]:
        """:meth:`status` in a worker thread."""
        return await asyncio.to_thread(self.status, transitions)


def stage_key(state: RolloutState) -> str:
    """What a compare guard's test belongs to: a new phase, stage or share starts a new one."""
    return f"{state.phase.value}/{state.stage}/{state.share}"


def check_manual_share(policy: Policy, current: RolloutState, share: int) -> None:
    """An operator's share: within 0..100 %, and a raise at most doubles the current share
    (from 0 %, at most the initial share). ValueError otherwise."""
    if not 0 <= share <= BUCKETS:
        raise ValueError(f"share {share} buckets is outside 0..{BUCKETS} (0% to 100%)")
    ceiling = max(current.share * 2, policy.initial_share)
    if share > current.share and share > ceiling:
        raise ValueError(
            f"share {percent(share)} more than doubles the current {percent(current.share)}; "
            f"at most {percent(ceiling)} in one change"
        )


def _summary(evaluation: Evaluation) -> str:
    return ", ".join(
        f"{f.guard} {f.verdict.value}"
        + (f" {f.value:.4g}/{f.threshold:.4g}" if f.value is not None else "")
        + f" n={f.samples}"
        for f in evaluation.figures
    )


def _log_transition(t: Transition) -> None:
    rolled_back = t.to_phase == Phase.ROLLED_BACK.value
    log.log(
        logging.WARNING if rolled_back else logging.INFO,
        "rollout %s r%d: %s -> %s, share %s -> %s, stage %d: %s (by %s%s)%s",
        t.rollout,
        t.revision,
        t.from_phase,
        t.to_phase,
        t.from_share,
        t.to_share,
        t.stage,
        t.reason,
        t.actor,
        f", operator's reason {t.operator_reason!r}" if t.operator_reason else "",
        f" guards {t.guards}" if rolled_back else "",
    )


__all__ = ["ACTIONS", "Controller", "TransitionError", "check_manual_share", "failure_class"]
