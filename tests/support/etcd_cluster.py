"""A real etcd cluster on loopback ports for the fleet tests (Debian's ``etcd-server``).

:class:`EtcdCluster` runs ``size`` members, each a :class:`ManagedProcess` (own process group,
log file, always stopped), with data dirs under ``root``. Members bind 127.0.0.1 only.
Tests kill, stop and restart members by index; ``close()`` stops whatever still runs.
Readiness is waited on (each member's ``/health``), never slept for.
"""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Self

from extproc.stack.processes import ManagedProcess, free_port, wait_until

HOST = "127.0.0.1"
# Snappier than etcd's defaults (100 ms / 1 s would also do) so that a lost leader is
# replaced within about a second; still well above loopback round trips on a busy machine.
HEARTBEAT_MS = 100
ELECTION_MS = 1000


def find_etcd() -> str:
    found = shutil.which("etcd")
    if found is None:
        raise FileNotFoundError("no etcd binary: apt-get install etcd-server")
    return found


class EtcdCluster:
    def __init__(self, root: Path, size: int = 3, ready_timeout: float = 30.0) -> None:
        self.root = root
        self.ready_timeout = ready_timeout
        self.names = [f"m{i}" for i in range(size)]
        self.client_ports = [free_port() for _ in self.names]
        peers = [free_port() for _ in self.names]
        initial = ",".join(f"{n}=http://{HOST}:{p}" for n, p in zip(self.names, peers, strict=True))
        etcd = find_etcd()
        token = f"fleet-test-{self.client_ports[0]}"  # one per cluster, the same for its members
        self.members = []
        for name, client, peer in zip(self.names, self.client_ports, peers, strict=True):
            argv = [etcd, "--name", name, "--data-dir", str(root / name)]
            argv += ["--listen-client-urls", f"http://{HOST}:{client}"]
            argv += ["--advertise-client-urls", f"http://{HOST}:{client}"]
            argv += ["--listen-peer-urls", f"http://{HOST}:{peer}"]
            argv += ["--initial-advertise-peer-urls", f"http://{HOST}:{peer}"]
            argv += ["--initial-cluster", initial, "--initial-cluster-state", "new"]
            argv += ["--initial-cluster-token", token]
            argv += ["--heartbeat-interval", str(HEARTBEAT_MS)]
            argv += ["--election-timeout", str(ELECTION_MS)]
            argv += ["--logger", "zap", "--log-level", "warn"]
            self.members.append(ManagedProcess(f"etcd-{name}", argv, root / f"{name}.log"))

    @property
    def endpoints(self) -> list[str]:
        return [f"{HOST}:{port}" for port in self.client_ports]

    def url(self, prefix: str) -> str:
        """``etcd://all members/prefix`` (``prefix`` starts with /)."""
        return f"etcd://{','.join(self.endpoints)}{prefix}"

    def start(self) -> Self:
        try:
            for member in self.members:
                member.start()
            self.wait_healthy()
        except BaseException:
            self.close()
            raise
        return self

    def healthy(self, index: int) -> bool:
        """True if member ``index`` answers /health with a leader in view."""
        url = f"http://{HOST}:{self.client_ports[index]}/health"
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                return bool(json.loads(response.read()).get("health") == "true")
        except (OSError, ValueError, urllib.error.URLError):
            return False

    def wait_healthy(self, indexes: list[int] | None = None) -> None:
        """Wait until the members (default: all running ones) are healthy."""
        wanted = indexes if indexes is not None else self.running()
        wait_until(
            lambda: all(self.healthy(i) for i in wanted),
            f"etcd members {wanted} to be healthy",
            self.ready_timeout,
        )

    def leader_index(self) -> int | None:
        """The index of the raft leader, as the running members see it (None: no leader)."""
        for index in self.running():
            url = f"http://{HOST}:{self.client_ports[index]}/v3/maintenance/status"
            request = urllib.request.Request(url, data=b"{}", method="POST")
            try:
                with urllib.request.urlopen(request, timeout=1) as response:
                    status = json.loads(response.read())
            except (OSError, ValueError):
                continue
            if status.get("leader") and status["leader"] == status["header"]["member_id"]:
                return index
        return None

    def running(self) -> list[int]:
        return [i for i, m in enumerate(self.members) if m.alive()]

    def kill(self, index: int) -> None:
        """SIGKILL member ``index`` (its data stays: it can be restarted)."""
        self.members[index].kill()

    def restart(self, index: int) -> None:
        """Start a stopped member again on the same data dir and ports."""
        self.members[index].start()

    def close(self) -> None:
        # A member that lost its quorum may hang in a graceful stop: keep it short.
        for member in self.members:
            member.stop(timeout=2.0)

    def log_tails(self) -> str:
        return "\n".join(m.log_tail(15) for m in self.members)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
