"""The private contract between the supervisor of ``extproc serve --workers N`` and a worker.

The supervisor (extproc/sidecar/workers/supervisor.py) starts each worker as
``python -m extproc serve`` with the same settings, ``--workers 1``, ``--metrics 127.0.0.1:0``
(``''`` when the supervisor's metrics are off) and the environment
variable ``EXTPROC_WORKER=INDEX:REPORT_FD:LIFELINE_FD`` (internal: not a user setting). The
worker then

- binds the shared ``--listen`` port with SO_REUSEPORT;
- once serving, writes ``ready METRICS_PORT`` (0: metrics off) on REPORT_FD and closes it:
  the supervisor scrapes that private loopback port and merges it into its own /metrics;
- watches LIFELINE_FD, whose write end only the supervisor holds: end of file means the
  supervisor is gone (even by SIGKILL), and the worker drains and exits instead of serving
  on, orphaned.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the server imports grpc; this module must not
    from extproc.sidecar.server import Running

WORKER_ENV = "EXTPROC_WORKER"

log = logging.getLogger("extproc.worker")


@dataclass(frozen=True, slots=True)
class WorkerChannel:
    """Worker ``index``'s two pipe ends to its supervisor."""

    index: int
    report_fd: int
    lifeline_fd: int

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> WorkerChannel | None:
        """The channel the supervisor set up, or None when this process is no worker."""
        text = environ.get(WORKER_ENV, "")
        if not text:
            return None
        try:
            index, report_fd, lifeline_fd = (int(part) for part in text.split(":"))
        except ValueError:
            raise ValueError(
                f"{WORKER_ENV}: {text!r} is set by --workers only (INDEX:REPORT_FD:LIFELINE_FD)"
            ) from None
        return cls(index, report_fd, lifeline_fd)

    def env_value(self) -> str:
        return f"{self.index}:{self.report_fd}:{self.lifeline_fd}"

    def started(self, running: Running, stop: asyncio.Event) -> None:
        """Report the metrics port to the supervisor; set ``stop`` when the supervisor dies."""
        os.write(self.report_fd, f"ready {running.metrics_port}\n".encode())
        os.close(self.report_fd)
        loop = asyncio.get_running_loop()

        def supervisor_gone() -> None:
            try:
                data = os.read(self.lifeline_fd, 64)
            except OSError:
                data = b""
            if not data:
                loop.remove_reader(self.lifeline_fd)
                log.warning("supervisor gone: draining")
                stop.set()

        loop.add_reader(self.lifeline_fd, supervisor_gone)
