"""Bounded, open-loop background traffic through a stack's Envoy, every reply recorded.

Requests leave at a fixed ``rate`` (round-robin over ``users``) whatever the answers do, as
real listeners would: a slow v2 does not slow the arrivals down, so its share of the samples
rises as it would in production. At most ``max_in_flight`` requests are outstanding; an
arrival finding them all busy is skipped and counted, so the load stays bounded. Each reply
is kept as a :class:`Sent` (monotonic send and receive times, status, the answering model
version), so a test can ask when the last v2 answer arrived or whether traffic has settled.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from extproc.stack import client


@dataclass(frozen=True, slots=True)
class Sent:
    user: str
    sent_at: float
    received_at: float
    status: int
    version: str | None


class BackgroundLoad:
    """A context manager: traffic runs inside the ``with`` block, stops and drains on exit."""

    def __init__(
        self,
        target: client.HasListener,
        users: Sequence[str],
        rate: float = 80.0,
        max_in_flight: int = 48,
    ) -> None:
        self.target = target
        self.users = list(users)
        self.rate = rate
        self.max_in_flight = max_in_flight
        self.replies: list[Sent] = []  # list.append is atomic
        self.failures: list[BaseException] = []
        self.skipped = 0
        self._in_flight: dict[int, float] = {}  # request number -> sent_at
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=max_in_flight, thread_name_prefix="load")
        self._pacer = threading.Thread(target=self._pace, name="load-pacer", daemon=True)

    def __enter__(self) -> Self:
        self._pacer.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop the arrivals and wait for the requests in flight."""
        self._stop.set()
        self._pacer.join(timeout=30)
        self._pool.shutdown(wait=True)

    def _pace(self) -> None:
        due = time.monotonic()
        for n in itertools.count():
            if self._stop.is_set():
                return
            due += 1.0 / self.rate
            with self._lock:
                busy = len(self._in_flight) >= self.max_in_flight
                if not busy:
                    self._in_flight[n] = time.monotonic()
            if busy:
                self.skipped += 1
            else:
                self._pool.submit(self._send, n, self.users[n % len(self.users)])
            self._stop.wait(max(0.0, due - time.monotonic()))  # pacing, not waiting on a result

    def _send(self, n: int, user: str) -> None:
        sent_at = self._in_flight[n]
        try:
            reply = client.send(self.target, {"x-user-id": user})
            self.replies.append(Sent(user, sent_at, time.monotonic(), reply.status, reply.version))
        except BaseException as exc:  # reported by the test, not lost in a thread
            self.failures.append(exc)
        finally:
            with self._lock:
                del self._in_flight[n]
            if self._stop.is_set():
                client.close_connections()

    # ---- questions a test asks ---------------------------------------------------------

    def count(self, version: str | None = None) -> int:
        return sum(1 for r in self.replies if version is None or r.version == version)

    def last_received(self, version: str) -> float | None:
        """Monotonic time of the last reply from ``version``, None if there was none."""
        times = [r.received_at for r in self.replies if r.version == version]
        return max(times) if times else None

    def settled_on(self, version: str, last: int) -> bool:
        """True once the ``last`` most recently sent requests were all answered by
        ``version`` and nothing sent before them is still in flight (so no reply from
        another version can still arrive)."""
        recent = sorted(self.replies, key=lambda r: r.sent_at)[-last:]
        if len(recent) < last or any(r.version != version for r in recent):
            return False
        with self._lock:
            oldest_in_flight = min(self._in_flight.values(), default=None)
        return oldest_in_flight is None or oldest_in_flight > recent[0].sent_at
