"""``extproc serve --workers N``: a supervisor that runs N sidecars on one port.

Each worker is a fresh ``python -m extproc serve`` process (not a fork: grpc and uvloop are
not fork-safe, and this module imports neither) that binds the shared ``--listen`` address
with SO_REUSEPORT, so the kernel spreads new connections over the workers. The supervisor

- gives every worker the same id-hash key (EXTPROC_ID_HASH_KEY, random when unset);
- checks the rules file once before starting anything: a bad file is the loader's
  ``FILE:LINE`` error and exit 1, instead of N workers that each wait, unready;
- serves /metrics on ``--metrics``: its own metrics plus every worker's, labelled
  ``worker="I"`` (see worker_metrics.py);
- restarts a worker that exits unexpectedly after a bounded backoff, counting it, while the
  other workers keep serving the port; the backoff doubles with every crash of a worker that
  did not stay up ``STABLE_SECONDS`` (a crash loop is slowed to one restart per
  ``BACKOFF_MAX_SECONDS``). A worker that exits before it is ready, or is not ready within
  ``START_TIMEOUT_SECONDS`` (then it is killed), is a start failure: at the first start that
  ends the supervisor (port taken, bad settings), later ``MAX_START_FAILURES`` in a row do.
  Either way the exit code is the worker's, non-zero;
- on SIGTERM or SIGINT forwards SIGTERM to every worker, waits for their drain
  (EXTPROC_GRACE_SECONDS) plus ``STOP_MARGIN_SECONDS``, SIGKILLs stragglers and exits 0.

The wire between the two sides is in worker_channel.py.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from secrets import token_hex
from types import FrameType

from prometheus_client import CollectorRegistry, start_http_server

from extproc.addresses import split_host_port
from extproc.core.errors import RulesError
from extproc.core.loader import load_rules
from extproc.settings import WORKERS, ServeSettings
from extproc.sidecar.workers.channel import WORKER_ENV, WorkerChannel
from extproc.sidecar.workers.metrics import WorkerExpositions
from extproc.telemetry.metrics import SupervisorMetrics
from extproc.telemetry.privacy import ENV as ID_HASH_KEY

log = logging.getLogger("extproc.supervisor")

STOP_MARGIN_SECONDS = 3.0
MAX_START_FAILURES = 5
BACKOFF_FIRST_SECONDS, BACKOFF_MAX_SECONDS = 0.1, 5.0
STABLE_SECONDS = 10.0  # a worker up this long before it dies starts a new backoff series
START_TIMEOUT_SECONDS = 30.0
SCRAPE_TIMEOUT_SECONDS = 1.0
TICK_SECONDS = 0.1


class StartFailed(Exception):
    """A worker could not start; ``code`` is its exit code (never 0)."""

    def __init__(self, index: int, code: int) -> None:
        super().__init__(f"worker {index} exited {code} before it was ready")
        self.code = code if code > 0 else 1


@dataclass
class Worker:
    """One worker slot: the process now in it, its pipes and its restart bookkeeping."""

    index: int
    proc: subprocess.Popen[bytes] | None = None
    report_fd: int = -1  # read end: "ready PORT"
    lifeline_fd: int = -1  # write end, never written: closing it tells the worker to go
    metrics_port: int | None = None  # set once ready
    ever_ready: bool = False
    start_failures: int = 0  # in a row, before ready
    crashes: int = 0  # in a row, after ready, each within STABLE_SECONDS of being ready
    started_at: float = 0.0
    ready_at: float = 0.0
    restart_at: float | None = None
    pending: bytes = field(default=b"", repr=False)

    def close_pipes(self) -> None:
        for fd in (self.report_fd, self.lifeline_fd):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.report_fd = self.lifeline_fd = -1


def restart_delay(earlier: int) -> float:
    """Seconds before a restart that follows ``earlier`` failures in a row: 0.1, 0.2, 0.4 ...
    up to BACKOFF_MAX_SECONDS."""
    return float(min(BACKOFF_FIRST_SECONDS * 2 ** min(earlier, 32), BACKOFF_MAX_SECONDS))


class Supervisor:
    """Runs ``settings.workers`` workers until a signal (see the module docstring)."""

    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings
        self.workers = [Worker(i) for i in range(settings.workers)]
        self.metrics = SupervisorMetrics()
        self.metrics.record_workers(settings.workers)
        self._stopping = False
        # One id-hash key for all workers (and their restarts), so that a user's keyed hash
        # is the same whichever worker decided; a key the operator set is kept as is.
        self._shared_env = {} if os.environ.get(ID_HASH_KEY) else {ID_HASH_KEY: token_hex(32)}

    # ---- the worker processes -------------------------------------------------------------

    def _argv(self) -> list[str]:
        s = self.settings
        argv = [sys.executable, "-m", "extproc", "serve", "--rules", s.rules]
        # Each worker's metrics on a private port the supervisor merges; none when it has none.
        metrics = "127.0.0.1:0" if s.metrics else ""
        argv += ["--listen", s.listen, "--metrics", metrics, "--workers", "1"]
        return [*argv, "--state", s.state]

    def _spawn(self, worker: Worker) -> None:
        report_r, report_w = os.pipe()
        lifeline_r, lifeline_w = os.pipe()
        channel = WorkerChannel(worker.index, report_w, lifeline_r)
        env = {**os.environ, **self._shared_env, WORKER_ENV: channel.env_value(), WORKERS.env: "1"}
        try:
            worker.proc = subprocess.Popen(
                self._argv(), env=env, stdin=subprocess.DEVNULL, pass_fds=(report_w, lifeline_r)
            )
        finally:
            os.close(report_w)
            os.close(lifeline_r)
        os.set_blocking(report_r, False)
        worker.report_fd, worker.lifeline_fd = report_r, lifeline_w
        worker.metrics_port, worker.pending, worker.restart_at = None, b"", None
        worker.started_at = time.monotonic()
        log.info("worker %d started (pid %d)", worker.index, worker.proc.pid)

    def _read_report(self, worker: Worker) -> None:
        try:
            data = os.read(worker.report_fd, 256)
        except BlockingIOError:
            return
        worker.pending += data
        if b"\n" in worker.pending and worker.metrics_port is None:
            line = worker.pending.split(b"\n", 1)[0].decode(errors="replace").split()
            if len(line) == 2 and line[0] == "ready" and line[1].isdigit():
                worker.metrics_port = int(line[1])
                worker.ever_ready, worker.start_failures = True, 0
                worker.ready_at = time.monotonic()
                log.info("worker %d ready (pid %d)", worker.index, self._pid(worker))
        if not data:  # the worker closed its end: ready already, or exiting
            os.close(worker.report_fd)
            worker.report_fd = -1

    @staticmethod
    def _pid(worker: Worker) -> int:
        return worker.proc.pid if worker.proc is not None else -1

    def _reap(self, worker: Worker, code: int, now: float) -> None:
        """``worker`` exited by itself with ``code``: schedule its restart, or give up."""
        was_ready = worker.metrics_port is not None
        worker.proc = None
        worker.metrics_port = None
        worker.close_pipes()
        if not was_ready:
            worker.start_failures += 1
            if not worker.ever_ready or worker.start_failures >= MAX_START_FAILURES:
                raise StartFailed(worker.index, code)
            delay = restart_delay(worker.start_failures)
        else:
            if now - worker.ready_at >= STABLE_SECONDS:
                worker.crashes = 0
            worker.crashes += 1
            delay = restart_delay(worker.crashes - 1)
        log.error(
            "worker %d exited %d unexpectedly: restarting in %.1fs", worker.index, code, delay
        )
        worker.restart_at = now + delay

    def _tick(self) -> None:
        fds = [w.report_fd for w in self.workers if w.report_fd >= 0]
        readable = select.select(fds, [], [], TICK_SECONDS)[0] if fds else []
        if not fds:
            time.sleep(TICK_SECONDS)
        for worker in self.workers:
            if worker.report_fd in readable:
                self._read_report(worker)
        if self._stopping:
            return
        now = time.monotonic()
        for worker in self.workers:
            self._kill_if_start_hangs(worker, now)
            code = worker.proc.poll() if worker.proc is not None else None
            if code is not None:
                self._reap(worker, code, now)
            elif worker.proc is None and worker.restart_at is not None and now >= worker.restart_at:
                self.metrics.record_restart()
                self._spawn(worker)

    def _kill_if_start_hangs(self, worker: Worker, now: float) -> None:
        """A worker not ready ``START_TIMEOUT_SECONDS`` after its start is killed; its exit
        is then reaped as a start failure."""
        proc = worker.proc
        if proc is None or worker.metrics_port is not None or proc.poll() is not None:
            return
        if now - worker.started_at >= START_TIMEOUT_SECONDS:
            log.error(
                "worker %d (pid %d) not ready after %.0fs: killing it",
                worker.index, proc.pid, START_TIMEOUT_SECONDS,
            )  # fmt: skip
            proc.kill()
            proc.wait()

    def _stop_workers(self) -> None:
        """SIGTERM every worker, wait for the drain plus a margin, SIGKILL what is left."""
        running = [w.proc for w in self.workers if w.proc is not None]
        for proc in running:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.settings.grace_seconds + STOP_MARGIN_SECONDS
        for proc in running:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("worker pid %d still running after the drain: SIGKILL", proc.pid)
                proc.kill()
                proc.wait()
        for worker in self.workers:
            worker.proc = None
            worker.close_pipes()

    def ready_ports(self) -> dict[int, int]:
        return {w.index: w.metrics_port for w in self.workers if w.metrics_port is not None}

    # ---- the whole life ---------------------------------------------------------------

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._stopping = True

    def run(self) -> int:
        """Serve until SIGTERM or SIGINT (exit 0); non-zero if the workers cannot start."""
        try:
            load_rules(self.settings.rules)
        except RulesError as exc:
            log.error("cannot start: %s", exc)
            return 1
        scrape = WorkerExpositions(self.ready_ports, self.metrics, SCRAPE_TIMEOUT_SECONDS)
        http = None
        if self.settings.metrics:
            registry = CollectorRegistry()
            registry.register(scrape)
            host, port = split_host_port(self.settings.metrics)
            try:
                http, _ = start_http_server(port, host, registry=registry)
            except OSError as exc:
                log.error("cannot start: metrics on %s: %s", self.settings.metrics, exc)
                return 1
        signals = (signal.SIGTERM, signal.SIGINT)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in signals}
        try:
            return self._supervise()
        finally:
            self._stop_workers()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if http is not None:
                http.shutdown()
            scrape.close()
            log.info("stopped")

    def _supervise(self) -> int:
        for worker in self.workers:
            self._spawn(worker)
        log.info(
            "supervising %d workers on %s, metrics on %s",
            len(self.workers),
            self.settings.listen,
            self.settings.metrics or "off",
        )
        try:
            while not self._stopping:
                self._tick()
        except StartFailed as exc:
            log.error("cannot start: %s (its error is logged above)", exc)
            return exc.code
        log.info("signal received: stopping %d workers", len(self.workers))
        return 0
