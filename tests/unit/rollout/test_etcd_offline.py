"""The etcd layer's behaviour that needs no etcd: backoff bounds, a cluster that is not
there, and controllers on a file store (no election)."""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import pytest

from extproc.rollout import fleet_control
from extproc.rollout.controller import Controller
from extproc.rollout.policy import parse_policy
from extproc.rollout.stores.backoff import Backoff
from extproc.rollout.stores.etcd_session import EtcdSession
from extproc.rollout.stores.etcd_types import EtcdUnavailable
from extproc.rollout.stores.state_store import FileStateStore
from extproc.stack.processes import free_port

POLICY = b"policy:\n  rollout: offline\n  initial_share: 10%\n"


def test_backoff_grows_jittered_and_bounded() -> None:
    backoff = Backoff(initial=0.1, cap=2.0, rng=random.Random(7))
    delays = [backoff.delay() for _ in range(12)]
    ceilings = [min(0.1 * 2**n, 2.0) for n in range(12)]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert len(set(delays)) == len(delays)  # jittered
    backoff.reset()
    assert backoff.delay() <= 0.1


def test_backoff_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="bad backoff"):
        Backoff(initial=3.0, cap=2.0)


def test_no_member_reachable_is_an_oserror_naming_them() -> None:
    dead = [f"127.0.0.1:{free_port()}" for _ in range(2)]  # nothing listens there
    session = EtcdSession(dead, timeout=0.5, deadline=0.5)
    try:
        began = time.monotonic()
        with pytest.raises(EtcdUnavailable) as caught:
            session.call(lambda c: c.get("/x/state"))
        assert time.monotonic() - began < 5  # bounded by the deadline, not hanging
        assert isinstance(caught.value, OSError)
        assert all(target in str(caught.value) for target in dead)
    finally:
        session.close()
    session.close()  # twice is fine


def test_a_file_store_has_no_election(tmp_path: Path) -> None:
    args = argparse.Namespace(leader_ttl="10", leader_id="", admin="")
    store = FileStateStore(tmp_path / "s.json")
    assert fleet_control.leadership_for(store, args) is None
    controller = Controller(parse_policy("p.yaml", POLICY), store, {})
    with fleet_control.campaigning(controller):
        assert controller.leadership is None


def test_the_leader_key_publishes_a_dialable_admin_address() -> None:
    assert fleet_control._dialable("127.0.0.1:50061") == "127.0.0.1:50061"
    assert fleet_control._dialable("unix:/run/admin.sock") == "unix:/run/admin.sock"
    assert fleet_control._dialable("0.0.0.0:50061") == ""  # names no host: --leader-admin
    assert fleet_control._dialable("[::]:50061") == ""
