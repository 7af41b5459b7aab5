"""The etcd state store against a real 3-member cluster: the StateStore contract, the
compare-and-swap race between two writers, and the audit log it leaves."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections import Counter

import pytest

from extproc.rollout import state as machine
from extproc.rollout.clock import FakeClock
from extproc.rollout.controller import Controller
from extproc.rollout.policy import parse_policy
from extproc.rollout.state import Phase, RolloutState
from extproc.rollout.stores.etcd_store import EtcdStateStore
from extproc.rollout.stores.etcd_types import Put
from extproc.rollout.stores.state_store import Conflict
from tests.fleet import figures
from tests.fleet.conftest import StoreFactory

POLICY = parse_policy(
    "policy.yaml", b"policy:\n  rollout: fleet\n  initial_share: 10%\n  step: 10%\n"
)
RACE_ROUNDS = 200


def started(store: EtcdStateStore) -> RolloutState:
    """The rollout (created if absent) started in ``store``; the started state."""
    store.create(RolloutState("fleet", updated_at=1.0))
    pending = store.read()
    assert pending is not None
    change = machine.start(pending, POLICY, time.time(), "setup")
    store.write(change, pending.revision)
    return change[0]


def test_create_read_write_audit(open_store: StoreFactory) -> None:
    store = open_store()
    assert store.read() is None
    assert store.audit() == []
    assert store.create(RolloutState("fleet", updated_at=1.0))
    assert not store.create(RolloutState("other"))  # only if absent
    current = started(store)
    assert store.read() == current
    stale = machine.pause(current, time.time(), "late")
    paused = machine.pause(current, time.time(), "alice")
    store.write(paused, current.revision)
    with pytest.raises(Conflict, match="revision 2, not 1"):
        store.write(stale, current.revision)
    assert store.read() == paused[0]
    assert [e["reason"] for e in store.audit()] == ["start", "pause"]
    assert [e["revision"] for e in store.audit(1)] == [2]


def test_a_value_that_is_not_a_state_is_an_error_not_a_crash(open_store: StoreFactory) -> None:
    store = open_store()
    store.session.call(lambda c: c.txn([], [Put(store.state_key, b"{not json")]))
    with pytest.raises(ValueError, match="not a rollout state"):
        store.read()


def test_two_writers_from_the_same_revision_exactly_one_wins(open_store: StoreFactory) -> None:
    """Two controllers (own sessions, members tried in different orders) race RACE_ROUNDS
    times: both read the same revision and write a different share at the same moment."""
    endpoints = open_store().target.endpoints
    alice = open_store(list(endpoints))
    bob = open_store(list(reversed(endpoints)))
    state = started(alice)
    barrier = threading.Barrier(2)
    wins: Counter[str] = Counter()
    winners: dict[int, str] = {}

    def race(store: EtcdStateStore, name: str, base: RolloutState, share: int) -> None:
        change = machine.set_share(base, share, time.time(), name)
        barrier.wait()
        try:
            store.write(change, base.revision)
        except Conflict:
            return
        wins[name] += 1
        winners[change[0].revision] = name

    began = time.monotonic()
    for round_ in range(RACE_ROUNDS):
        base = alice.read()
        assert base is not None
        racers = [
            threading.Thread(target=race, args=(alice, "alice", base, 1000 + round_)),
            threading.Thread(target=race, args=(bob, "bob", base, 5000 + round_)),
        ]
        for racer in racers:
            racer.start()
        for racer in racers:
            racer.join(30)
        assert sum(wins.values()) == round_ + 1, f"round {round_}: {dict(wins)}"
    elapsed = time.monotonic() - began

    final = alice.read()
    assert final is not None and final.revision == state.revision + RACE_ROUNDS
    audit = alice.audit(RACE_ROUNDS + 10)
    revisions = [e["revision"] for e in audit]
    assert revisions == list(range(1, final.revision + 1))  # none lost, none twice
    for entry in audit[1:]:  # each transition is the winner's, from the share before it
        assert entry["actor"] == winners[entry["revision"]]
    for before, after in itertools.pairwise(audit):  # a chain: nothing lost
        assert after["from_share"] == before["to_share"], (before, after)
    assert final.phase is Phase.RAMPING
    figures.report(
        f"CAS race: {RACE_ROUNDS} rounds, one winner each (alice {wins['alice']}, "
        f"bob {wins['bob']}), audit revisions 1..{final.revision} without gap or duplicate, "
        f"{figures.ms(elapsed / RACE_ROUNDS)} per round"
    )


def test_two_controllers_without_leadership_never_both_step(open_store: StoreFactory) -> None:
    """Two real controllers (no election) check at the same moment each time a step falls
    due: every step is applied once; the loser counts a conflict and changes nothing."""
    policy = parse_policy(
        "policy.yaml", b"policy:\n  rollout: fleet\n  initial_share: 1%\n  step: 1%\n"
    )
    clock = FakeClock()
    one = Controller(policy, open_store(), {}, clock=clock)
    two = Controller(policy, open_store(), {}, clock=clock)
    one.ensure_state()
    one.apply("start", "setup")

    async def both_check() -> None:
        await asyncio.gather(one.check(), two.check())

    for _ in range(30):
        clock.advance(policy.step_interval)
        asyncio.run(both_check())
    final = one.store.read()
    assert final is not None and final.stage == 31  # start + 30 due steps, each once
    audit = one.store.audit(50)
    assert [e["stage"] for e in audit] == list(range(1, 32))
    assert one.conflicts + two.conflicts <= 30  # a loser saw the state move on
