"""Every etcd failure class is a handled, retried, counted outcome: in the client (which
member to try next), and in every loop that talks to etcd: the controller's checks, the
leader election (campaign and lease keepalive) and the sidecar's state watch. No etcd here:
a real EtcdClient over fake members, and the loops over a fake client (fake_etcd.py)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aetcd import rpc

from extproc.rollout.clock import FakeClock
from extproc.rollout.controller import Controller, failure_class
from extproc.rollout.policy import parse_policy
from extproc.rollout.state import RolloutState
from extproc.rollout.stores import leader as leader_module
from extproc.rollout.stores.etcd_client import EtcdClient
from extproc.rollout.stores.etcd_faults import (
    RETRIED,
    UNEXPECTED,
    Fault,
    classify,
    diagnose,
    fault_of,
)
from extproc.rollout.stores.etcd_types import EtcdError, EtcdUnavailable
from extproc.rollout.stores.etcd_watch import StateWatch
from extproc.rollout.stores.leader import LeaderElection, LeaderRecord, LeaderUnknown
from extproc.rollout.stores.state_store import Conflict, FileStateStore
from tests.support.fake_etcd import FakeEtcd, FakeMember, FakeSession, range_reply, rpc_error

REFUSED_TCP = (
    "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:2379: "
    "Failed to connect to remote host: Connection refused"
)
#: (gRPC code, details as etcd or grpc sends them) -> class
ANSWERS = [
    ("UNKNOWN", "context deadline exceeded", Fault.TIMEOUT),
    ("DEADLINE_EXCEEDED", "Deadline Exceeded", Fault.TIMEOUT),
    ("UNAVAILABLE", "etcdserver: request timed out", Fault.TIMEOUT),
    (
        "UNAVAILABLE",
        "etcdserver: request timed out, possibly due to previous leader failure",
        Fault.TIMEOUT,
    ),
    ("UNKNOWN", "context canceled", Fault.TIMEOUT),
    ("UNAVAILABLE", "etcdserver: no leader", Fault.NO_LEADER),
    ("UNAVAILABLE", "etcdserver: leader changed", Fault.LEADER_CHANGED),
    ("UNAVAILABLE", REFUSED_TCP, Fault.UNREACHABLE),
    ("UNAVAILABLE", "Socket closed", Fault.UNREACHABLE),
    ("INTERNAL", "Received RST_STREAM with error code 2", Fault.UNREACHABLE),
    ("INTERNAL", "Internal error from Core", Fault.UNREACHABLE),
    ("UNKNOWN", "Stream removed", Fault.UNREACHABLE),
    ("INTERNAL", "etcdserver: corrupt cluster", Fault.REFUSED),
    ("CANCELLED", "Channel closed!", Fault.UNREACHABLE),
    ("UNAVAILABLE", "etcdserver: server stopped", Fault.UNHEALTHY),
    ("RESOURCE_EXHAUSTED", "etcdserver: too many requests", Fault.OVERLOADED),
    ("OUT_OF_RANGE", "etcdserver: mvcc: required revision has been compacted", Fault.COMPACTED),
    ("INVALID_ARGUMENT", "etcdserver: key is not provided", Fault.REFUSED),
    ("PERMISSION_DENIED", "etcdserver: permission denied", Fault.REFUSED),
]
RETRIED_ANSWERS = [a for a in ANSWERS if a[2] in RETRIED]
POLICY = b"policy:\n  rollout: faults\n  initial_share: 10%\n"


@pytest.mark.parametrize(("code", "details", "fault"), ANSWERS)
def test_each_answer_has_its_class(code: str, details: str, fault: Fault) -> None:
    assert classify(code, details) is fault


def _client(*members: FakeMember, deadline: float = 5.0) -> EtcdClient:
    client = EtcdClient([m.target for m in members], timeout=1.0, deadline=deadline)
    client._members = list(members)  # type: ignore[assignment]
    return client


@pytest.mark.parametrize(("code", "details", "fault"), RETRIED_ANSWERS)
def test_a_retried_class_moves_on_to_the_next_member_and_is_counted(
    code: str, details: str, fault: Fault
) -> None:
    failing = FakeMember("a:1", Range=[rpc_error(code, details)])
    healthy = FakeMember("b:1", Range=[range_reply(7, "/p/state", b"{}")])
    client = _client(failing, healthy)
    entry, revision = asyncio.run(client.get("/p/state"))
    assert entry is not None and revision == 7
    assert dict(client.faults) == {fault.value: 1}
    assert client.endpoint == "b:1"  # the next call starts where the last one answered


@pytest.mark.parametrize(("code", "details", "fault"), [a for a in ANSWERS if a[2] not in RETRIED])
def test_a_refusal_is_not_tried_elsewhere(code: str, details: str, fault: Fault) -> None:
    other = FakeMember("b:1", Range=[range_reply(7)])
    client = _client(FakeMember("a:1", Range=[rpc_error(code, details)]), other)
    with pytest.raises(EtcdError) as caught:
        asyncio.run(client.get("/p/state"))
    assert caught.value.fault == fault.value and other.asked == []


def test_a_lost_quorum_says_so_with_n_of_m_members_reachable() -> None:
    survivor = FakeMember("a:1", Range=[rpc_error("UNAVAILABLE", "etcdserver: no leader")])
    dead = [FakeMember(f"{n}:1", Range=[rpc_error("UNAVAILABLE", REFUSED_TCP)]) for n in "bc"]
    client = _client(survivor, *dead, deadline=0.01)  # one round, then give up
    with pytest.raises(EtcdUnavailable) as caught:
        asyncio.run(client.get("/p/state"))
    assert caught.value.fault == "quorum_lost"
    assert caught.value.diagnosis.startswith("etcd quorum lost: 1 of 3 members reachable")
    assert "bring back members until 2 of 3 run" in caught.value.diagnosis
    assert "a:1: UNAVAILABLE etcdserver: no leader" in str(caught.value)
    assert dict(client.faults) == {"no_leader": 1, "unreachable": 2}


def test_a_keepalive_stream_closed_unanswered_is_not_a_lost_lease() -> None:
    """A member dying mid-stream can end it without a reply: that is ``unreachable`` and
    the next member renews; only a reply with TTL 0 (or NOT_FOUND) means the lease is gone."""
    dying = FakeMember("a:1", LeaseKeepAlive=[[]])
    healthy = FakeMember("b:1", LeaseKeepAlive=[[rpc.LeaseKeepAliveResponse(ID=5, TTL=9)]])
    client = _client(dying, healthy)
    assert asyncio.run(client.keepalive(5)) == 9
    assert dict(client.faults) == {"unreachable": 1}


@pytest.mark.parametrize(
    ("faults", "kind", "start"),
    [
        ([Fault.UNREACHABLE] * 3, "unreachable", "etcd unreachable: 0 of 3 members reachable"),
        ([Fault.TIMEOUT] * 3, "timeout", "etcd did not answer in time (0 of 3 members"),
        ([Fault.LEADER_CHANGED, Fault.NO_LEADER, Fault.UNREACHABLE], "electing", "etcd is elect"),
        ([Fault.NO_LEADER, Fault.UNREACHABLE, Fault.TIMEOUT], "quorum_lost", "etcd quorum lost"),
        ([Fault.OVERLOADED] * 3, "overloaded", "etcd members failing (overloaded; 3 of 3"),
    ],
)
def test_the_diagnosis_names_the_cause(faults: list[Fault], kind: str, start: str) -> None:
    found, text = diagnose({f"m{i}": f for i, f in enumerate(faults)}, 3)
    assert (found, text[: len(start)]) == (kind, start)


# ---- the controller's checks -------------------------------------------------------------

FAILURES: list[tuple[Exception, str]] = [
    (EtcdUnavailable("etcd get: quorum lost", "quorum_lost"), "quorum_lost"),
    (EtcdUnavailable("etcd get: timed out", "timeout"), "timeout"),
    (EtcdUnavailable("etcd get: unreachable", "unreachable"), "unreachable"),
    (EtcdUnavailable("etcd get: electing", "electing"), "electing"),
    (EtcdError("etcd get: UNKNOWN context deadline exceeded"), "refused"),
    (EtcdError("etcd watch: compacted", "compacted"), "compacted"),
    (Conflict("state moved on"), "conflict"),
    (OSError("disk full"), "store_unavailable"),
    (ValueError("not a rollout state"), "bad_state"),
    (RuntimeError("something nobody expected"), "unexpected"),
]


class FailingStore(FileStateStore):
    """A file store whose reads raise the scripted failures first."""

    def __init__(self, path: Path, failures: list[Exception]) -> None:
        super().__init__(path)
        self.failures = list(failures)

    def read(self) -> RolloutState | None:
        if self.failures:
            raise self.failures.pop(0)
        return super().read()


def test_the_controller_check_loop_survives_every_class_and_counts_it(tmp_path: Path) -> None:
    store = FailingStore(tmp_path / "s.json", [exc for exc, _ in FAILURES])
    controller = Controller(
        parse_policy("p.yaml", POLICY), store, {}, clock=FakeClock(), interval=0.5
    )

    async def run() -> None:
        task = asyncio.create_task(controller.run())
        while controller.checks < len(FAILURES) + 1:
            assert not task.done(), "the check loop ended"
            await asyncio.sleep(0.01)
        controller.request_stop()
        await asyncio.wait_for(task, 10)

    asyncio.run(run())
    assert dict(controller.failures) == {kind: 1 for _, kind in FAILURES}
    assert store.read() is not None  # once etcd answered, the check went through
    assert [failure_class(exc) for exc, _ in FAILURES] == [kind for _, kind in FAILURES]


# ---- the leader election -----------------------------------------------------------------


def _elect(etcd: FakeEtcd, ttl: int = 3) -> LeaderElection:
    return LeaderElection(FakeSession(etcd), "/p/leader", "ctrl-a", ttl, "127.0.0.1:50061")  # type: ignore[arg-type]


def _wait(condition: Callable[[], bool], what: str) -> Any:
    async def waiting() -> None:
        async with asyncio.timeout(20):
            while not condition():
                await asyncio.sleep(0.01)

    return waiting()


OUTAGES = [
    EtcdUnavailable("lease: quorum lost", "quorum_lost"),
    EtcdUnavailable("lease: timeout", "timeout"),
    EtcdUnavailable("lease: unreachable", "unreachable"),
    EtcdUnavailable("lease: electing", "electing"),
    EtcdError("lease: refused"),
    RuntimeError("unexpected"),
]


def test_the_campaign_survives_every_class_then_leads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(leader_module.Backoff, "delay", lambda self: 0.0)
    etcd = FakeEtcd()
    etcd.fail["grant"].extend(OUTAGES)
    election = _elect(etcd)

    async def run() -> None:
        election.start()
        await _wait(election.is_leader, "to lead")
        await election._session.close()  # type: ignore[attr-defined]

    asyncio.run(run())
    assert dict(election.faults) == {
        "quorum_lost": 1,
        "timeout": 1,
        "unreachable": 1,
        "electing": 1,
        "refused": 1,
        "unexpected": 1,
    }
    record = LeaderRecord.decode(etcd.data["/p/leader"].value)
    assert (record.id, record.admin) == ("ctrl-a", "127.0.0.1:50061")
    assert record.since is not None


def test_a_leader_keeps_leading_through_failed_renewals_of_every_class(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each failed keepalive is retried soon (RETRY_SECONDS) while the lease may still live;
    all of them together take far less than the lease, so the leader never steps down."""
    monkeypatch.setattr(leader_module, "RETRY_SECONDS", 0.01)
    etcd = FakeEtcd()
    etcd.fail["keepalive"].extend(OUTAGES)
    election = _elect(etcd, ttl=3)

    async def run() -> None:
        election.start()
        await _wait(election.is_leader, "to lead")
        await _wait(lambda: sum(election.faults.values()) == len(OUTAGES), "every failure")
        await _wait(lambda: election.outage is None, "a renewal to succeed")
        assert election.is_leader()
        await election._session.close()  # type: ignore[attr-defined]

    asyncio.run(run())
    assert election.terms == 1  # never stepped down and elected again


def test_with_etcd_gone_nobody_leads_and_the_refusal_names_the_outage(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(leader_module.Backoff, "delay", lambda self: 0.05)
    etcd = FakeEtcd()
    diagnosis = "etcd quorum lost: 1 of 3 members reachable, none with a raft leader"
    etcd.fail["grant"].extend([EtcdUnavailable(diagnosis, "quorum_lost", diagnosis)] * 1000)
    election = _elect(etcd)

    async def run() -> None:
        election.start()
        await _wait(lambda: election.outage is not None, "the outage")
        with pytest.raises(LeaderUnknown) as caught:
            election.require_leader()
        assert caught.value.fault == "quorum_lost"
        assert str(caught.value) == f"no controller leads: {diagnosis}"
        snapshot = election.snapshot()
        assert (snapshot["replica_leads"], snapshot["leader"]) == (False, None)
        assert snapshot["outage"] == diagnosis
        await election._session.close()  # type: ignore[attr-defined]

    asyncio.run(run())


# ---- the sidecar's state watch -----------------------------------------------------------


def test_the_state_watch_survives_every_class_and_keeps_the_last_state(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    etcd = FakeEtcd()
    state = RolloutState(rollout="faults", revision=3, share=1000)
    etcd.put("/p/state", json.dumps(state.to_json()).encode())
    seen: list[RolloutState] = []
    errors: list[Exception] = []
    compacted = EtcdError("watch: compacted", "compacted")
    etcd.fail["get"].extend([*OUTAGES[:4], compacted])

    class Quick:  # no backoff pauses in a unit test
        def delay(self) -> float:
            return 0.0

        def reset(self) -> None:
            return None

    async def run() -> StateWatch:
        watch = StateWatch(FakeSession(etcd), "/p/state", seen.append, errors.append, Quick())  # type: ignore[arg-type]
        await _wait(lambda: len(seen) == 1, "the first state")
        etcd.fail["watch"].extend(OUTAGES)  # the watch stream fails in every way
        etcd.changed.set()
        await _wait(lambda: watch.failures >= len(OUTAGES) + 5, "every failure")
        newer = RolloutState(rollout="faults", revision=4, share=2000)
        etcd.put("/p/state", json.dumps(newer.to_json()).encode())
        await _wait(lambda: len(seen) == 2, "the newer state")
        await watch._session.close()  # type: ignore[attr-defined]
        return watch

    watch = asyncio.run(run())
    assert [s.revision for s in seen] == [3, 4]  # each once, in order, none lost
    assert watch.last is not None and watch.last.revision == 4
    assert errors  # the consumer heard of the outages


def test_a_failure_is_counted_under_its_fault_else_unexpected() -> None:
    class Faulty(Exception):
        fault = "no_leader"

    assert fault_of(Faulty()) == "no_leader"
    assert fault_of(ValueError("not etcd's")) == UNEXPECTED == "unexpected"
    blank = Faulty()
    blank.fault = ""  # type: ignore[misc]
    assert fault_of(blank) == UNEXPECTED
