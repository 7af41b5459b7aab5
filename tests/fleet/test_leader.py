"""Leader election on a real etcd cluster: one controller leads, the other stands by and
refuses changes naming the leader; a deposed leader is fenced off; and when the leading
controller PROCESS is killed mid-ramp, the standby takes over within its lease and goes on
from the same stage, no step applied twice."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from extproc.rollout import state as machine
from extproc.rollout.controller import Controller
from extproc.rollout.policy import load_policy
from extproc.rollout.state import Phase
from extproc.rollout.stores.etcd_session import EtcdSession
from extproc.rollout.stores.etcd_store import EtcdStateStore, FencedOut
from extproc.rollout.stores.leader import LeaderElection, NotLeaderError
from extproc.stack.processes import wait_until
from tests.fleet import figures
from tests.fleet.conftest import StoreFactory
from tests.fleet.controllers import (
    LEADER_TTL,
    FleetController,
    current,
    leader_of,
    write_policy,
)
from tests.support.etcd_cluster import EtcdCluster

TAKEOVER_LIMIT = LEADER_TTL * figures.FAR_BEYOND


Elect = Callable[[str], tuple[EtcdStateStore, LeaderElection]]


@pytest.fixture
def elect(open_store: StoreFactory) -> Iterator[Elect]:
    """Factory: (store, election) on a session of their own, the store fenced by it."""
    started: list[LeaderElection] = []

    def make(name: str) -> tuple[EtcdStateStore, LeaderElection]:
        store = open_store()
        election = LeaderElection(store.session, store.leader_key, name, LEADER_TTL)
        store.fence = election.fence
        election.start()
        started.append(election)
        return store, election

    yield make
    for election in started:
        election.stop(resign=True)


def test_one_leads_the_standby_refuses_naming_it(elect: Elect, tmp_path: Path) -> None:
    store_a, a = elect("ctrl-a")
    wait_until(a.is_leader, "ctrl-a to lead", 10)
    store_b, b = elect("ctrl-b")
    wait_until(lambda: b.leader == "ctrl-a", "ctrl-b to see ctrl-a lead", 10)
    assert a.is_leader() and not b.is_leader()
    policy = load_policy(write_policy(tmp_path / "policy.yaml", "fleet"))
    standby = Controller(policy, store_b, {}, leadership=b)
    standby.ensure_state()  # a standby may read (and create the pending state)
    with pytest.raises(NotLeaderError, match=r"^not the leader; leader is ctrl-a$"):
        standby.apply("start", "alice")
    with pytest.raises(FencedOut):  # and its store will not write, even if asked directly
        pending = store_b.read()
        assert pending is not None
        store_b.write(machine.start(pending, policy, time.time(), "b"), pending.revision)
    leader = Controller(policy, store_a, {}, leadership=a)
    assert leader.apply("start", "alice").phase is Phase.RAMPING

    began = time.monotonic()
    a.stop(resign=True)  # a clean shutdown: the standby takes over at once
    wait_until(b.is_leader, "ctrl-b to lead after ctrl-a resigned", TAKEOVER_LIMIT)
    figures.report(f"leader resigned: standby leads {figures.ms(time.monotonic() - began)} later")
    assert standby.apply("pause", "bob").phase is Phase.PAUSED


def test_a_deposed_leader_cannot_write(elect: Elect, etcd: EtcdCluster, tmp_path: Path) -> None:
    """The old leader has not noticed yet (a long GC pause, say) while its lease is gone and
    a new leader was elected: the fence in its write transaction refuses it."""
    store_a, a = elect("ctrl-a")
    wait_until(a.is_leader, "ctrl-a to lead", 10)
    _, b = elect("ctrl-b")
    wait_until(lambda: b.leader == "ctrl-a", "ctrl-b to stand by", 10)
    policy = load_policy(write_policy(tmp_path / "policy.yaml", "fleet"))
    Controller(policy, store_a, {}, leadership=a).ensure_state()
    pending = store_a.read()
    assert pending is not None
    stale_term = a.fence()
    lease = a._lease
    assert lease is not None
    outsider = EtcdSession(etcd.endpoints)
    try:
        outsider.call(lambda c: c.revoke(lease))  # the lease ends behind ctrl-a's back
    finally:
        outsider.close()
    wait_until(b.is_leader, "ctrl-b to take over", TAKEOVER_LIMIT)
    store_a.fence = lambda: stale_term  # ctrl-a still believes it leads
    with pytest.raises(FencedOut, match="lost the leadership"):
        store_a.write(machine.start(pending, policy, time.time(), "a"), pending.revision)
    assert current(store_a).phase is Phase.PENDING and store_a.audit() == []


def test_killing_the_leading_controller_mid_ramp(
    etcd: EtcdCluster, prefix: str, open_store: StoreFactory, tmp_path: Path
) -> None:
    policy = write_policy(tmp_path / "policy.yaml", "fleet")
    url = etcd.url(prefix)
    a = FleetController("ctrl-a", policy, url, tmp_path)
    b = FleetController("ctrl-b", policy, url, tmp_path)
    store = open_store()
    try:
        a.start()
        wait_until(lambda: leader_of(store) == "ctrl-a", "ctrl-a to lead", 15, a.process)
        b.start()
        b.wait_logged("standing by; leader of")
        refused = b.refusal("Start", actor="alice")
        assert refused.code() is grpc.StatusCode.FAILED_PRECONDITION
        assert refused.details() == f"not the leader; leader is ctrl-a (admin {a.admin})"
        assert dict(refused.trailing_metadata() or ())["x-rollout-leader-admin"] == a.admin
        status = b.call("Status")  # a standby answers status, and says who leads
        assert status.state.rollout == "fleet"
        lead = status.leadership
        assert (lead.elected, lead.replica, lead.replica_leads) == (True, "ctrl-b", False)
        assert (lead.leader, lead.leader_admin) == ("ctrl-a", a.admin)
        assert lead.HasField("leader_since")
        assert a.call("Status").leadership.replica_leads
        a.call("Start", actor="alice")
        wait_until(lambda: current(store).stage >= 3, "stage 3", 15, a.process)

        a.process.kill()  # SIGKILL: no resignation, the lease has to run out
        killed = time.monotonic()
        at_kill = current(store)
        wait_until(lambda: leader_of(store) == "ctrl-b", "ctrl-b to lead", TAKEOVER_LIMIT)
        takeover = time.monotonic() - killed
        target = at_kill.stage + 2
        wait_until(lambda: current(store).stage >= target, f"stage {target}", 15, b.process)
        resumed = time.monotonic() - killed
        assert b.call("Status").state.stage >= target
    finally:
        a.stop()
        b.stop()
    audit = store.audit(100)
    assert [e["revision"] for e in audit] == list(range(1, len(audit) + 1))
    steps = [e for e in audit if e["reason"].startswith("step to")]
    assert [e["stage"] for e in steps] == list(range(2, len(steps) + 2))  # each stage once
    for before, after in itertools.pairwise(audit):
        assert after["from_share"] == before["to_share"]  # nothing lost, nothing repeated
    after_kill = next(e for e in audit if e["revision"] == at_kill.revision + 1)
    assert after_kill["stage"] == at_kill.stage + 1  # the same stage, continued
    assert takeover < TAKEOVER_LIMIT
    figures.report(
        f"leader controller SIGKILLed at stage {at_kill.stage} (lease {LEADER_TTL} s): standby "
        f"leads after {figures.ms(takeover)}, next step (stage {at_kill.stage + 1}) and stage "
        f"{target} reached {figures.ms(resumed)} after the kill; audit 1..{len(audit)} "
        "without gap or repeat"
    )


def test_a_restarted_leader_ends_its_own_stale_lease(open_store: StoreFactory) -> None:
    """A leader process dies and comes back (same replica name) before its lease ran out:
    it ends its old lease instead of waiting for it to expire."""
    first = open_store()
    old = LeaderElection(first.session, first.leader_key, "ctrl-a", ttl=10)
    old.start()
    wait_until(old.is_leader, "ctrl-a to lead", 10)
    first.session.close()  # dies: nothing renews, nothing revokes; the lease has ~10 s left
    again = open_store()
    new = LeaderElection(again.session, again.leader_key, "ctrl-a", ttl=10)
    began = time.monotonic()
    new.start()
    try:
        wait_until(new.is_leader, "the restarted ctrl-a to lead", 5)  # well within the TTL
    finally:
        new.stop()
    figures.report(
        f"restarted leader (same name, old lease 10 s): leads again after "
        f"{figures.ms(time.monotonic() - began)}"
    )
