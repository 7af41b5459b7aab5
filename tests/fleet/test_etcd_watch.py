"""Watching the rollout state on a real 3-member etcd cluster: three watchers (as three
sidecars would) get every change; losing a member changes nothing; losing the quorum keeps
the last state with no error escaping, and following resumes once etcd is back."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from extproc.rollout import state as machine
from extproc.rollout.state import RolloutState
from extproc.rollout.stores.etcd_store import EtcdStateStore
from extproc.rollout.stores.etcd_watch import StateWatch
from extproc.stack.processes import wait_until
from tests.fleet import figures
from tests.fleet.conftest import StoreFactory
from tests.fleet.test_etcd_store import started
from tests.support.etcd_cluster import EtcdCluster

LIMIT = figures.PROPAGATION_SECONDS * figures.FAR_BEYOND


class Recorder:
    """A watcher's consumer: when (monotonic) each revision arrived."""

    def __init__(self) -> None:
        self.arrivals: dict[int, float] = {}
        self.order: list[int] = []
        self.errors: list[Exception] = []
        self._lock = threading.Lock()

    def on_state(self, state: RolloutState) -> None:
        with self._lock:
            self.arrivals.setdefault(state.revision, time.monotonic())
            self.order.append(state.revision)

    def on_error(self, exc: Exception) -> None:
        self.errors.append(exc)

    def has(self, revision: int) -> bool:
        return revision in self.arrivals


Watchers = list[tuple[StateWatch, Recorder]]


@pytest.fixture
def fleet(open_store: StoreFactory) -> Iterator[tuple[EtcdStateStore, Watchers]]:
    """A writer, and three watchers each starting at a different member."""
    writer = open_store()
    started(writer)
    endpoints = list(writer.target.endpoints)
    watchers = []
    for i in range(3):
        store = open_store(endpoints[i:] + endpoints[:i])
        recorder = Recorder()
        watchers.append((store.watch_state(recorder.on_state, recorder.on_error), recorder))
    wait_until(lambda: all(w.synced.is_set() for w, _ in watchers), "watchers synced", 10)
    yield writer, watchers


def write_share(writer: EtcdStateStore, share: int) -> tuple[int, float]:
    """Set the share; returns the new revision and when the write began (monotonic)."""
    current = writer.read()
    assert current is not None
    change = machine.set_share(current, share, time.time(), "test")
    began = time.monotonic()
    writer.write(change, current.revision)
    return change[0].revision, began


def delivered(
    watchers: Watchers, revision: int, began: float, timeout: float
) -> tuple[float, float]:
    """Wait until every watcher has ``revision``; (slowest latency, spread) in seconds."""
    wait_until(
        lambda: all(r.has(revision) for _, r in watchers),
        f"revision {revision} everywhere",
        timeout,
    )
    times = [r.arrivals[revision] for _, r in watchers]
    return max(times) - began, max(times) - min(times)


def test_every_change_reaches_three_watchers_within_a_second(
    fleet: tuple[EtcdStateStore, Watchers],
) -> None:
    writer, watchers = fleet
    latencies, spreads, revisions = [], [], []
    for step in range(20):
        revision, began = write_share(writer, 100 + step)
        latency, spread = delivered(watchers, revision, began, LIMIT)
        latencies.append(latency)
        spreads.append(spread)
        revisions.append(revision)
    for _, recorder in watchers:  # every state, once, in order
        assert recorder.order[-len(revisions) :] == revisions
        assert not recorder.errors
    assert max(latencies) < LIMIT
    figures.report(
        f"watch, 3 watchers x 20 changes: write-to-last-watcher max {figures.ms(max(latencies))}"
        f" (median {figures.ms(sorted(latencies)[10])}), spread between watchers max "
        f"{figures.ms(max(spreads))} (median {figures.ms(sorted(spreads)[10])})"
    )


def test_losing_one_member_changes_nothing(
    fleet: tuple[EtcdStateStore, Watchers], etcd: EtcdCluster
) -> None:
    """Kill the raft leader (the harder case: an election follows): reads, writes and all
    watches go on, the watchers on the dead member move to another."""
    writer, watchers = fleet
    leader = etcd.leader_index()
    assert leader is not None
    etcd.kill(leader)
    began_outage = time.monotonic()
    revision, began = write_share(writer, 500)  # bridges the election
    delivered(watchers, revision, began, 10 + LIMIT)
    outage = max(r.arrivals[revision] for _, r in watchers) - began_outage
    latencies = []
    for step in range(5):
        revision, began = write_share(writer, 600 + step)
        latencies.append(delivered(watchers, revision, began, LIMIT)[0])
    assert writer.read() is not None and writer.audit(1)[0]["revision"] == revision
    assert max(latencies) < LIMIT
    figures.report(
        f"one member (the raft leader) killed: first change everywhere {figures.ms(outage)} "
        f"after the kill (election included); then write-to-last-watcher max "
        f"{figures.ms(max(latencies))}"
    )


def test_losing_the_quorum_keeps_the_last_state_and_following_resumes(
    fleet: tuple[EtcdStateStore, Watchers], etcd: EtcdCluster
) -> None:
    writer, watchers = fleet
    last, _ = write_share(writer, 700)
    wait_until(lambda: all(r.has(last) for _, r in watchers), "the last state everywhere", LIMIT)
    down = [0, 1]  # member 2 stays up, alone: no quorum
    for index in down:
        etcd.kill(index)
    wait_until(lambda: not any(w.connected for w, _ in watchers), "every watch to notice", 20)
    with pytest.raises(OSError, match=r"etcd quorum lost: 1 of 3 members reachable|did not answer"):
        write_share(writer, 800)  # no quorum: refused, nothing half-written
    for watch, recorder in watchers:  # the last state stays; errors were told, not raised
        assert watch.last is not None and watch.last.revision == last
        assert recorder.order[-1] == last
        assert recorder.errors  # each consumer heard of the outage once
        assert not watch._future.done()  # still trying
    for index in down:
        etcd.restart(index)
    etcd.wait_healthy()
    back = time.monotonic()
    wait_until(lambda: all(w.connected for w, _ in watchers), "every watch to reconnect", 20)
    reconnected = time.monotonic() - back
    revision, began = write_share(writer, 900)
    latency, spread = delivered(watchers, revision, began, LIMIT)
    assert revision == last + 1  # the refused write left nothing behind
    figures.report(
        f"quorum lost and back: watchers kept revision {last}; all reconnected "
        f"{figures.ms(reconnected)} after etcd was healthy (backoff capped at 2 s); next "
        f"change everywhere in {figures.ms(latency)} (spread {figures.ms(spread)})"
    )
