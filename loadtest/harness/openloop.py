"""An open-loop HTTP/1.1 load generator: requests leave on a fixed schedule, whatever the server.

Request ``i`` is due at ``start + i / rate`` and its latency is measured from that *intended*
time to the last byte of its response, so a stalled server shows up in the latency of every
request that should have left meanwhile (no coordinated omission, as in wrk2); ``service_ms``
is the same measured from when the request really left, for comparison. A due request
takes an idle keep-alive connection, or opens a new one (up to ``max_connections``), or waits
in a backlog; waiting counts as latency.

Scheduling precision comes from a timerfd (nanosecond, absolute CLOCK_MONOTONIC deadlines)
polled with the sockets in one epoll loop: asyncio and epoll timeouts have millisecond
resolution, which alone would add up to 1 ms to every request. How late each request really
left (``send_lag_ms``) and the client's own CPU use are part of the result, so a run can show
that the client kept its schedule.

The run is bounded: ``rate * duration`` requests at most, and it ends ``timeout`` seconds after
the last scheduled send at the latest (responses still missing then count as ``timeout``).

    python -m loadtest.harness.openloop --port 10000 --rate 1000 --duration 10  # one JSON line
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import select
import socket
import sys
import time
from array import array
from collections import Counter, deque
from typing import TypedDict

from loadtest.harness.population import http1_request
from loadtest.harness.timing import DeadlineTimer, Summary, summarize

START_DELAY_NS = 50_000_000


class _Conn:
    __slots__ = ("buf", "intended", "sent", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.intended: int | None = None  # intended send time of the request in flight
        self.sent = 0  # when it really left


class OpenLoopResult(TypedDict):
    """What one run printed: counts, statuses, errors by kind, latency and send lag."""

    rate: float
    duration_s: float
    scheduled: int
    completed: int
    status: dict[str, int]
    errors: dict[str, int]
    latency_ms: Summary
    service_ms: Summary
    send_lag_ms: Summary
    connections_opened: int
    client_cpu_seconds: float
    wall_seconds: float


class OpenLoopRun:
    """One run against ``host:port``; :meth:`run` returns the result as plain data."""

    def __init__(
        self,
        host: str,
        port: int,
        rate: float,
        duration: float,
        *,
        max_connections: int = 512,
        initial_connections: int = 16,
        timeout: float = 5.0,
    ) -> None:
        if rate <= 0 or duration <= 0:
            raise ValueError("rate and duration must be positive")
        self.address = (host, port)
        self.host_header = f"{host}:{port}"
        self.rate = rate
        self.duration = duration
        self.total = int(rate * duration)
        self.period_ns = 1e9 / rate
        self.max_connections = max_connections
        self.initial_connections = min(initial_connections, max_connections)
        self.timeout_ns = int(timeout * 1e9)
        self.epoll = select.epoll()
        self.conns: dict[int, _Conn] = {}
        self.idle: list[_Conn] = []
        self.backlog: deque[int] = deque()
        self.latency_ms: array[float] = array("d")
        self.lag_ms: array[float] = array("d")
        self.service_ms: array[float] = array("d")
        self.status: Counter[int] = Counter()
        self.errors: Counter[str] = Counter()
        self.opened = 0
        self.in_flight = 0
        self.start_ns = 0

    def _open(self) -> _Conn | None:
        if len(self.conns) >= self.max_connections:
            return None
        try:
            sock = socket.create_connection(self.address, timeout=2)
        except OSError:
            self.errors["connect"] += 1
            return None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        conn = _Conn(sock)
        self.conns[sock.fileno()] = conn
        self.epoll.register(sock.fileno(), select.EPOLLIN)
        self.opened += 1
        return conn

    def _close(self, conn: _Conn, error: str | None) -> None:
        """Close ``conn``; a request in flight on it is lost and counted as ``error``."""
        if conn.intended is not None:
            self.errors[error or "lost"] += 1
            self.in_flight -= 1
        fd = conn.sock.fileno()
        self.epoll.unregister(fd)
        del self.conns[fd]
        conn.sock.close()
        if conn in self.idle:
            self.idle.remove(conn)

    def _intended(self, i: int) -> int:
        return self.start_ns + int(i * self.period_ns)

    def _send(self, i: int, conn: _Conn) -> None:
        request = http1_request(i, self.host_header)
        conn.intended = intended = self._intended(i)
        conn.sent = time.monotonic_ns()
        self.lag_ms.append((conn.sent - intended) / 1e6)
        self.in_flight += 1
        try:
            sent = conn.sock.send(request)
        except OSError:
            self._close(conn, "send")
            return
        if sent != len(request):  # a tiny request on an idle connection always fits
            self._close(conn, "short_write")

    def _dispatch(self, i: int) -> None:
        conn = self.idle.pop() if self.idle else self._open()
        if conn is None:
            self.backlog.append(i)
        else:
            self._send(i, conn)

    def _on_readable(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            self._close(conn, "read")
            return
        if not data:
            self._close(conn, "closed")
            return
        conn.buf += data
        end = conn.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(conn.buf[:end]).lower()
        length = 0
        for line in head.split(b"\r\n")[1:]:
            if line.startswith(b"content-length:"):
                length = int(line[15:])
        if len(conn.buf) < end + 4 + length:
            return
        done = time.monotonic_ns()
        if conn.intended is None:
            self.errors["unsolicited"] += 1
            self._close(conn, None)
            return
        self.latency_ms.append((done - conn.intended) / 1e6)
        self.service_ms.append((done - conn.sent) / 1e6)
        self.status[int(head[9:12])] += 1
        conn.intended = None
        del conn.buf[: end + 4 + length]
        self.in_flight -= 1
        if b"\r\nconnection: close" in head or b"\r\ntransfer-encoding:" in head:
            # closed by the server, or framing this client does not parse: a fresh connection
            self.errors["server_closed"] += 1
            self._close(conn, None)
            replacement = self._open()
            if replacement is None:
                return
            conn = replacement
        if self.backlog:
            self._send(self.backlog.popleft(), conn)
        else:
            self.idle.append(conn)

    def run(self) -> OpenLoopResult:
        """Send every scheduled request, wait for the answers (bounded), return the figures."""
        # No reference cycles are made per request: the collector's pauses would only add
        # noise to the latencies (re-enabled on return).
        gc.collect()
        gc.disable()
        for _ in range(self.initial_connections):
            conn = self._open()
            if conn is not None:
                self.idle.append(conn)
        timer = DeadlineTimer()
        self.epoll.register(timer.fd, select.EPOLLIN)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        self.start_ns = time.monotonic_ns() + START_DELAY_NS
        deadline = self._intended(self.total) + self.timeout_ns
        next_i = 0
        try:
            while True:
                now = time.monotonic_ns()
                while next_i < self.total and self._intended(next_i) <= now:
                    self._dispatch(next_i)
                    next_i += 1
                finished = next_i >= self.total and not self.in_flight and not self.backlog
                if finished or now > deadline:
                    break
                if next_i < self.total:
                    timer.arm(self._intended(next_i))
                for fd, _ in self.epoll.poll(max(0.0, (deadline - now) / 1e9)):
                    if fd == timer.fd:
                        timer.drain()
                    elif fd in self.conns:
                        self._on_readable(self.conns[fd])
        finally:
            wall = (time.monotonic_ns() - self.start_ns) / 1e9
            after = resource.getrusage(resource.RUSAGE_SELF)
            timer.close()
            gc.enable()
            for conn in list(self.conns.values()):
                self._close(conn, "timeout")
            self.epoll.close()
        unsent = self.total - next_i + len(self.backlog)
        if unsent:
            self.errors["unsent"] += unsent
        cpu = (after.ru_utime + after.ru_stime) - (usage.ru_utime + usage.ru_stime)
        return {
            "rate": self.rate,
            "duration_s": self.duration,
            "scheduled": self.total,
            "completed": len(self.latency_ms),
            "status": {str(code): n for code, n in sorted(self.status.items())},
            "errors": dict(self.errors),
            "latency_ms": summarize(self.latency_ms),
            "service_ms": summarize(self.service_ms),
            "send_lag_ms": summarize(self.lag_ms),
            "connections_opened": self.opened,
            "client_cpu_seconds": cpu,
            "wall_seconds": wall,
        }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="server address (%(default)s)")
    parser.add_argument("--port", type=int, required=True, help="server port")
    parser.add_argument("--rate", type=float, required=True, help="requests per second")
    parser.add_argument("--duration", type=float, required=True, help="seconds of sending")
    parser.add_argument("--max-connections", type=int, default=512, help="(%(default)s)")
    parser.add_argument("--timeout", type=float, default=5.0, help="drain seconds (%(default)s)")
    args = parser.parse_args(argv)
    run = OpenLoopRun(
        args.host, args.port, args.rate, args.duration,
        max_connections=args.max_connections, timeout=args.timeout,
    )  # fmt: skip
    json.dump(run.run(), sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
