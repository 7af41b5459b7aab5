"""Delivery to one sink: a bounded queue and a thread of its own, retries with back-off.

:class:`SinkWorker` contract:

- ``offer(event)`` never blocks (one short lock) and never raises: the rollout controller
  calls it right after writing a transition, so a slow or dead receiver cannot delay a
  rollback. The queue holds at most ``capacity`` events; when full the OLDEST is dropped
  (counted ``dropped``): the newest state of a rollout is the one worth sending.
- One attempt is one HTTP POST with the sink's timeout. 2xx: ``delivered`` (and the delay
  from the transition to the delivery is observed). 408, 429, 5xx, a timeout or a
  connection error: retried after ``initial * 2**n`` seconds (capped, jittered in its upper
  half) until the sink's ``attempts`` are used up (``failed``). Any other status (a bad
  URL, a refused key): ``rejected`` at once, since repeating it cannot help. Redirects are
  not followed.
- ``close(timeout)`` stops taking events and keeps delivering what is queued until the
  deadline; whatever is left then is counted ``abandoned``.
Each sink has its own worker, so a slow Slack never holds back the Alertmanager alert.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable
from typing import Protocol

from extproc.rollout.notify.events import Event
from extproc.rollout.notify.sinks import Request, Sink

log = logging.getLogger("extproc.rollout.notify")

QUEUE_CAPACITY = 100
BACKOFF_INITIAL = 0.5
BACKOFF_CAP = 8.0
_RESPONSE_LIMIT = 64 * 1024

Transport = Callable[[Request, float], int]


class Counters(Protocol):
    """What delivery records (notify.metrics.NotifyMetrics implements it)."""

    def record_outcome(self, sink: str, outcome: str) -> None: ...

    def record_retry(self, sink: str) -> None: ...

    def record_queue(self, sink: str, depth: int) -> None: ...

    def record_delay(self, sink: str, seconds: float) -> None: ...


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # the 3xx comes back as an HTTPError: rejected


_OPENER = urllib.request.build_opener(_NoRedirect())


def post(request: Request, timeout: float) -> int:
    """POST the request; its HTTP status. OSError (timeouts included) when there is none."""
    http = urllib.request.Request(request.url, request.body, request.headers, method="POST")
    try:
        with _OPENER.open(http, timeout=timeout) as response:
            response.read(_RESPONSE_LIMIT)
            return int(response.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return int(exc.code)


def retryable(status: int) -> bool:
    return status in (408, 429) or status >= 500


class SinkWorker:
    def __init__(
        self,
        sink: Sink,
        counters: Counters,
        *,
        capacity: int = QUEUE_CAPACITY,
        transport: Transport = post,
        backoff: tuple[float, float] = (BACKOFF_INITIAL, BACKOFF_CAP),
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.sink = sink
        self.capacity = capacity
        self._counters = counters
        self._transport = transport
        self._backoff = backoff
        self._wall_clock = wall_clock
        self._rng = random.Random()
        self._queue: deque[Event] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self._deadline = math.inf  # monotonic; set by close()
        self._thread = threading.Thread(target=self._run, name=f"notify-{sink.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def offer(self, event: Event) -> None:
        with self._cond:
            if self._closing:
                self._counters.record_outcome(self.sink.name, "abandoned")
                return
            if len(self._queue) >= self.capacity:
                dropped = self._queue.popleft()
                self._counters.record_outcome(self.sink.name, "dropped")
                log.warning("notify %s: queue full, dropped %s", self.sink.name, dropped.id)
            self._queue.append(event)
            self._counters.record_queue(self.sink.name, len(self._queue))
            self._cond.notify_all()

    def close(self, timeout: float) -> None:
        """Deliver what is queued for up to ``timeout`` seconds, then give up on the rest."""
        with self._cond:
            self._closing = True
            self._deadline = time.monotonic() + timeout
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout + 1.0)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    return
                event = self._queue.popleft()
                self._counters.record_queue(self.sink.name, len(self._queue))
            try:
                self._deliver(event)
            except Exception:  # a bug here must not end the worker
                log.exception("notify %s: delivering %s failed", self.sink.name, event.id)
                self._counters.record_outcome(self.sink.name, "failed")

    def _deliver(self, event: Event) -> None:
        name, attempts = self.sink.name, self.sink.spec.attempts
        for attempt in range(1, attempts + 1):
            budget = min(self.sink.spec.timeout, self._deadline - time.monotonic())
            if budget <= 0:
                self._counters.record_outcome(name, "abandoned")
                return
            request = self.sink.request(event, self._wall_clock())
            try:
                status: int | None = self._transport(request, budget)
                problem = f"HTTP {status}"
            except OSError as exc:  # refused, reset, timed out, name not found
                status, problem = None, str(exc) or type(exc).__name__
            if status is not None and 200 <= status < 300:
                self._counters.record_outcome(name, "delivered")
                self._counters.record_delay(name, max(0.0, self._wall_clock() - event.at))
                return
            if status is not None and not retryable(status):
                self._counters.record_outcome(name, "rejected")
                log.error("notify %s: %s refused %s; not retried", name, problem, event.id)
                return
            if attempt == attempts:
                break
            self._counters.record_retry(name)
            log.warning(
                "notify %s: %s for %s (attempt %d/%d)", name, problem, event.id, attempt, attempts
            )
            if not self._sleep(self._delay(attempt)):
                self._counters.record_outcome(name, "abandoned")
                return
        self._counters.record_outcome(name, "failed")
        log.error("notify %s: gave up on %s after %d attempts", name, event.id, attempts)

    def _delay(self, attempt: int) -> float:
        initial, cap = self._backoff
        ceiling = min(initial * 2 ** (attempt - 1), cap)
        return self._rng.uniform(ceiling / 2, ceiling)

    def _sleep(self, seconds: float) -> bool:
        """Wait ``seconds``; False as soon as the close deadline passes."""
        end = time.monotonic() + seconds
        with self._cond:
            while True:
                now = time.monotonic()
                if now >= self._deadline:
                    return False
                if now >= end:
                    return True
                self._cond.wait(min(end, self._deadline) - now)
