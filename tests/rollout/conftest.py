"""Fixtures of the rollout tests: a real controller over a file store, the admin API."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from extproc.rollout.admin.access import AdminAccess
from extproc.rollout.admin.server import RolloutController
from extproc.rollout.clock import FakeClock
from extproc.rollout.controller import Controller
from extproc.rollout.policy import Policy, parse_policy
from extproc.rollout.stores.state_store import FileStateStore

from .admin_harness import POLICY, AdminThread, Client, FixedSource

#: Outside the policy's 07:00-09:30 UTC freeze window.
NOON = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def policy() -> Policy:
    return parse_policy("policy.yaml", POLICY)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOON)


@pytest.fixture
def state_path(tmp_path: Path) -> Path:
    return tmp_path / "state.json"


@pytest.fixture
def controller(policy: Policy, state_path: Path, clock: FakeClock) -> Controller:
    """The real controller over a FileStateStore in tmp_path (its loop is not running:
    tests drive ``check()`` themselves); the pending state exists."""
    made = Controller(policy, FileStateStore(state_path), {"envoy": FixedSource()}, clock=clock)
    made.ensure_state()
    return made


@pytest.fixture
def start_admin() -> Iterator[Callable[..., AdminThread]]:
    """Factory: serve the admin API over a controller; every one is stopped at teardown."""
    started: list[AdminThread] = []

    def start(
        controller: RolloutController, token: str = "", address: str = "127.0.0.1:0"
    ) -> AdminThread:
        admin = AdminThread(controller, AdminAccess(address, token))
        started.append(admin)
        return admin

    yield start
    for admin in started:
        admin.stop()


@pytest.fixture
def admin(controller: Controller, start_admin: Callable[..., AdminThread]) -> AdminThread:
    """The admin API over the real controller on 127.0.0.1 (no token)."""
    return start_admin(controller)


@pytest.fixture
def client(admin: AdminThread) -> Iterator[Client]:
    made = Client(admin.target)
    yield made
    made.close()
