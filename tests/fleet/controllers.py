"""Rollout controllers as real processes on an etcd store, for the fleet tests.

:class:`FleetController` runs ``python -m extproc rollout controller`` with an etcd
``--state``, a leader lease, an admin API on a free loopback port and a name (its leader
id), and talks to that admin API with the generated stubs. ``leader_of(store)`` reads who
holds the leader key. Processes are :class:`ManagedProcess` (own group, always stopped).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import grpc

from extproc.rollout.state import RolloutState
from extproc.rollout.stores.etcd_store import EtcdStateStore
from extproc.rollout.stores.leader import LeaderRecord
from extproc.stack.processes import ManagedProcess, free_port, wait_until
from extproc.stack.stack import REPO_ROOT
from tests.rollout.admin_harness import Client

LEADER_TTL = 2  # seconds: a standby takes over within this (plus etcd's 0.5 s expiry tick)
CHECK_INTERVAL = 0.2

#: No guards (nothing to watch but the schedule): a step every second, 10 % at a time.
RAMP_POLICY = """policy:
  rollout: {rollout}
  initial_share: 10%
  step: 10%
  step_interval: {interval}
"""


def write_policy(path: Path, rollout: str, step_interval: str = "1s") -> Path:
    path.write_text(RAMP_POLICY.format(rollout=rollout, interval=step_interval))
    return path


class FleetController:
    def __init__(
        self,
        name: str,
        policy: Path,
        state_url: str,
        run_dir: Path,
        interval: float = CHECK_INTERVAL,
        extra: tuple[str, ...] = (),
    ) -> None:
        self.name = name
        self.admin = f"127.0.0.1:{free_port()}"
        argv = [sys.executable, "-m", "extproc", "rollout", "controller"]
        argv += ["--policy", str(policy), "--state", state_url, "--admin", self.admin]
        argv += ["--interval", str(interval), "--leader-ttl", str(LEADER_TTL), *extra]
        argv += ["--leader-id", name]
        log = run_dir / f"{name}.log"
        self.process = ManagedProcess(f"controller-{name}", argv, log, cwd=REPO_ROOT)
        self._client: Client | None = None

    def start(self) -> None:
        self.process.start()

    def client(self) -> Client:
        if self._client is None:
            self._client = Client(self.admin)
        return self._client

    def call(self, method: str, **fields: Any) -> Any:
        return self.client().call(method, **fields)

    def refusal(self, method: str, **fields: Any) -> grpc.RpcError:
        """Call ``method`` expecting a refusal; the error."""
        try:
            self.client().call(method, **fields)
        except grpc.RpcError as exc:
            return exc
        raise AssertionError(f"{self.name}: {method} was not refused")

    def logged(self, text: str) -> bool:
        return self.process.log_path.exists() and text in self.process.log_path.read_text()

    def wait_logged(self, text: str, timeout: float = 15) -> None:
        wait_until(lambda: self.logged(text), f"{self.name} to log {text!r}", timeout, self.process)

    def stop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        self.process.stop(timeout=5)


def leader_of(store: EtcdStateStore) -> str | None:
    """The identity in the leader key now (None: no leader)."""
    entry, _ = store.session.call(lambda c: c.get(store.leader_key))
    return LeaderRecord.decode(entry.value).id if entry is not None else None


def current(store: EtcdStateStore) -> RolloutState:
    state = store.read()
    assert state is not None
    return state
