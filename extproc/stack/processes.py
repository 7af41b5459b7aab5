"""Child processes for the local stack and the tests: spawn, wait until ready, stop, never leak.

- :class:`ManagedProcess` starts a command in its own session (so its whole process group can
  be signalled), writes its stdout and stderr to a log file, and is a context manager:
  leaving the ``with`` block (or an ``ExitStack``) stops it, even when the body raised.
- ``wait_for_*`` poll a readiness condition until a deadline. If the process exits or the
  deadline passes they raise :class:`NotReadyError` whose message ends with the log tail.
- :meth:`ManagedProcess.stop` sends SIGTERM (and SIGCONT, in case it was stopped) to the
  process group, then SIGKILL after a deadline. Processes are only ever signalled through the
  group this module created, never by name.
- An ``atexit`` hook stops whatever is still running when the interpreter exits normally.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

POLL_SECONDS = 0.05
LOG_TAIL_LINES = 30

_running: set[ManagedProcess] = set()


class NotReadyError(RuntimeError):
    """A process did not become ready (or died); the message carries its log tail."""


class ManagedProcess:
    """One child process with a log file; a context manager that always stops it."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        *,
        stdout_path: Path | None = None,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        """``stdout_path`` separates stdout from the log (e.g. Envoy's access log)."""
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.stdout_path = stdout_path
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self._popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        """Spawn the process (a new session: its pid is also its process-group id)."""
        if self.alive():
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        if self._popen is not None:
            self._finish()  # reap the previous run before its pid can be reused
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.ExitStack() as files:
            log: IO[bytes] = files.enter_context(self.log_path.open("ab"))
            out = files.enter_context(self.stdout_path.open("ab")) if self.stdout_path else log
            self._popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=log,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
            )
        _running.add(self)
        return self

    @property
    def pid(self) -> int:
        if self._popen is None:
            raise RuntimeError(f"{self.name} was never started")
        return self._popen.pid

    def alive(self) -> bool:
        """True while the process has not exited (a SIGSTOPped process is alive)."""
        return self._popen is not None and not self._exited()

    def _exited(self) -> bool:
        """True once the process exited. Does not reap it: while it is a zombie its pid, which
        is also its process-group id, cannot be reused, so signalling the group stays safe."""
        assert self._popen is not None
        if self._popen.returncode is not None:
            return True
        try:
            info = os.waitid(os.P_PID, self._popen.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return True
        return info is not None

    @property
    def returncode(self) -> int | None:
        """The exit code once exited (the process is then reaped), else None."""
        if self._popen is None or not self._exited():
            return None
        return self._finish()

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the process group; a no-op once the process has exited."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signum)

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM (plus SIGCONT), then SIGKILL after ``timeout`` s; returns the exit code."""
        if self._popen is None:
            return None
        if self.alive():
            self.signal(signal.SIGTERM)
            self.signal(signal.SIGCONT)
            deadline = time.monotonic() + timeout
            while not self._exited() and time.monotonic() < deadline:
                time.sleep(POLL_SECONDS)
        return self.kill()

    def kill(self) -> int | None:
        """SIGKILL the process group and reap the process; returns the exit code."""
        if self._popen is None:
            return None
        self.signal(signal.SIGKILL)
        return self._finish()

    def _finish(self) -> int:
        """Kill what is left of the group (children that outlived the leader), then reap."""
        assert self._popen is not None
        if self._popen.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._popen.pid, signal.SIGKILL)
        _running.discard(self)
        return self._popen.wait()

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last ``lines`` lines of the log (and of stdout, if separate)."""
        parts = []
        for path in (self.log_path, self.stdout_path):
            if path and path.exists():
                text = path.read_text(encoding="utf-8", errors="replace").splitlines()
                parts.append(f"--- {path} (last {lines} lines)\n" + "\n".join(text[-lines:]))
        return "\n".join(parts) or "(no log)"

    def __enter__(self) -> Self:
        return self if self.alive() else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.alive() else f"exited {self.returncode}"
        pid = self._popen.pid if self._popen else None
        return f"ManagedProcess({self.name!r}, pid={pid}, {state})"


class Service:
    """A :class:`ManagedProcess` as a context manager that is ready on entry: start it, run
    ``wait_ready`` (stopping the process if that fails), stop it on exit. Subclasses set
    ``self.process`` and implement ``wait_ready``."""

    process: ManagedProcess

    def wait_ready(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.process.start()
        try:
            self.wait_ready()
        except BaseException:
            self.process.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.process.stop()


def wait_until(
    condition: Callable[[], bool],
    what: str,
    timeout: float,
    process: ManagedProcess | None = None,
) -> None:
    """Poll ``condition`` until it is true; NotReadyError on timeout or if ``process`` dies."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return
        if process is not None and not process.alive():
            raise NotReadyError(
                f"{process.name} exited with code {process.returncode} before {what}\n"
                + process.log_tail()
            )
        if time.monotonic() >= deadline:
            tail = f"\n{process.log_tail()}" if process is not None else ""
            raise NotReadyError(f"timed out after {timeout:.1f}s waiting for {what}{tail}")
        time.sleep(POLL_SECONDS)


def port_accepts(host: str, port: int) -> bool:
    """True if a TCP connection to host:port succeeds now."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def http_status(url: str, timeout: float = 1.0) -> int | None:
    """The HTTP status of GET ``url``, or None if nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, ValueError):
        return None


def grpc_serving(target: str, service: str = "", timeout: float = 1.0) -> bool:
    """True if grpc.health.v1 at ``target`` reports SERVING for ``service``."""
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def wait_for_port(
    host: str, port: int, timeout: float = 15.0, process: ManagedProcess | None = None
) -> None:
    """Wait until host:port accepts TCP connections."""
    wait_until(lambda: port_accepts(host, port), f"{host}:{port} to accept", timeout, process)


def wait_for_http(
    url: str, timeout: float = 15.0, process: ManagedProcess | None = None, status: int = 200
) -> None:
    """Wait until GET ``url`` answers ``status``."""
    wait_until(lambda: http_status(url) == status, f"{url} to answer {status}", timeout, process)


def wait_for_grpc_serving(
    target: str, service: str = "", timeout: float = 15.0, process: ManagedProcess | None = None
) -> None:
    """Wait until the gRPC health service at ``target`` says SERVING for ``service``."""
    what = f"gRPC health of {service or '(server)'} at {target} to be SERVING"
    wait_until(lambda: grpc_serving(target, service), what, timeout, process)


_handed_out: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago and that this process has not handed out before."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        if port not in _handed_out:
            _handed_out.add(port)
            return port


@atexit.register
def _stop_leftovers() -> None:
    for process in list(_running):
        process.stop(timeout=2.0)
