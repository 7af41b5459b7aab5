"""The audio probes of the local stack: ``extproc probes`` as a child process.

It probes Envoy's loopback probe listener (v1 and v2 with the same text) and serves the
paired figures on 127.0.0.1:9470 (``/pairs`` for the controller's quality guards, ``/metrics``
for Prometheus). Scoring runs in its own child process within a CPU budget, so a scorer crash
touches neither the sidecar nor the controller (whose quality guards then hold).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from extproc.stack.processes import ManagedProcess, Service, wait_for_http

PROBES_HOST, PROBES_PORT = "127.0.0.1", 9470


class LocalProbes(Service):
    """``extproc probes`` against ``target`` (Envoy's probe listener); a context manager."""

    def __init__(
        self,
        target: str,
        run_dir: Path,
        env: dict[str, str],
        *,
        port: int = PROBES_PORT,
        extra: Sequence[str] = (),
    ) -> None:
        self.port = port
        argv = [sys.executable, "-m", "extproc", "probes", "--target", target]
        argv += ["--listen", f"{PROBES_HOST}:{port}", *extra]
        self.process = ManagedProcess("probes", argv, run_dir / "probes.log", env=env)

    @property
    def url(self) -> str:
        return f"http://{PROBES_HOST}:{self.port}"

    def wait_ready(self) -> None:
        wait_for_http(self.url + "/healthz", 30.0, self.process)
