"""Fail-safe under load (DESIGN invariant 3), through a real Envoy and the real sidecar.

A bounded background load (3 threads, paced, at most 3,000 requests and 30 s) of many users
runs while the test kills the sidecar (SIGKILL), starts it again, hangs it (SIGSTOP) and
resumes it (SIGCONT), Envoy running throughout. Each request records the phase it was sent in
and the phase it was answered in; a request sent and answered within one phase is judged by
that phase:

- sidecar up (before, restarted, resumed): the upstream is the decision core's cohort;
- sidecar dead or hung: 200 from v1, with no cohort header reaching v1 (a fail-open, not a
  decision).

Every request of the whole run, transitions included, is a 200 and reaches v2 only if the core
says v2. Latency is recorded, not asserted: the maximum while hung is printed (it is bounded by
Envoy's message_timeout).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType

import pytest

from extproc.core.decide import Decider
from extproc.core.loader import load_rules
from extproc.stack import client
from extproc.stack.processes import wait_until
from extproc.stack.stack import Stack

pytestmark = pytest.mark.envoy

StackFactory = Callable[..., Stack]

UP = ("up", "restarted", "resumed")
DEAD = ("dead", "dead, skipped")
HUNG = ("hung", "hung, skipped")
MESSAGE_TIMEOUTS = r"ext_proc\.message_timeouts$"


@dataclass(frozen=True)
class Outcome:
    """One request of the load."""

    user: str
    sent_in: str
    answered_in: str
    status: int | None
    version: str | None
    seen_cohort: str | None
    seconds: float
    error: str | None = None


class Load:
    """Paced requests from ``threads`` threads with keep-alive connections, round-robin over
    ``users``, until stopped or the budget is spent (``max_requests``, ``max_seconds``)."""

    def __init__(
        self,
        stack: Stack,
        users: Sequence[str],
        *,
        threads: int = 3,
        rate: float = 150.0,
        max_requests: int = 3000,
        max_seconds: float = 30.0,
    ) -> None:
        self.stack = stack
        self.users = users
        self.gap = threads / rate  # seconds between two requests of one thread
        self.max_requests = max_requests
        self.max_seconds = max_seconds
        self.phase = "up"
        self.outcomes: list[Outcome] = []
        self._issued = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def __enter__(self) -> Load:
        self._deadline = time.monotonic() + self.max_seconds
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def enter(self, phase: str) -> None:
        """From now on, requests are sent in ``phase``."""
        self.phase = phase

    def _next_user(self) -> str | None:
        with self._lock:
            if self._issued >= self.max_requests or time.monotonic() >= self._deadline:
                return None
            self._issued += 1
            return self.users[self._issued % len(self.users)]

    def _run(self) -> None:
        next_at = time.monotonic()
        try:
            while not self._stop.is_set() and (user := self._next_user()) is not None:
                self._record(user)
                next_at += self.gap
                self._stop.wait(max(0.0, next_at - time.monotonic()))  # pacing, not a wait
        finally:
            client.close_connections()

    def _record(self, user: str) -> None:
        sent_in, started = self.phase, time.perf_counter()
        try:
            reply = client.send(self.stack, {"x-user-id": user}, timeout=5.0)
        except Exception as exc:  # every failure is an outcome to report
            seconds = time.perf_counter() - started
            outcome = Outcome(user, sent_in, self.phase, None, None, None, seconds, repr(exc))
        else:
            seconds = time.perf_counter() - started
            seen = reply.headers.get("x-tts-seen-cohort")
            outcome = Outcome(user, sent_in, self.phase, reply.status, reply.version, seen, seconds)
        with self._lock:
            self.outcomes.append(outcome)

    def within(self, phases: Sequence[str]) -> list[Outcome]:
        """Requests sent and answered while the phase was one of ``phases``."""
        with self._lock:
            return [o for o in self.outcomes if o.sent_in in phases and o.answered_in in phases]

    def wait_for(self, phase: str, count: int, timeout: float = 10.0) -> None:
        """Wait until ``count`` requests were sent and answered in ``phase``."""

        def enough() -> bool:
            if len(self.within([phase])) >= count:
                return True
            assert any(t.is_alive() for t in self._threads), f"load budget spent in {phase!r}"
            return False

        wait_until(enough, f"{count} requests in phase {phase!r}", timeout)


def message_timeouts(stack: Stack) -> int:
    return sum(stack.envoy_stats(MESSAGE_TIMEOUTS).values())


def test_killed_or_hung_sidecar_costs_no_error_and_the_split_comes_back(
    make_stack: StackFactory, record_property: Callable[[str, object], None]
) -> None:
    stack = make_stack()
    decider = Decider(load_rules(stack.rules))
    users = [f"load-user-{i}" for i in range(600)]
    expected = {user: decider.decide({"x-user-id": user}).cohort.value for user in users}
    envoy_pid = stack.envoy.pid

    with Load(stack, users) as load:
        load.wait_for("up", 100)

        load.enter("killing")
        stack.kill_sidecar()
        load.enter("dead")  # Envoy has not noticed yet: its connection breaks
        load.wait_for("dead", 60)
        stack.wait_sidecar_health_in_envoy(healthy=False)
        load.enter("dead, skipped")  # its health check has: no connection attempt
        load.wait_for("dead, skipped", 60)

        load.enter("starting")
        stack.start_sidecar()  # returns once Envoy's health check sees it healthy
        load.enter("restarted")
        load.wait_for("restarted", 150)

        timeouts_before = message_timeouts(stack)
        load.enter("pausing")
        stack.pause_sidecar()
        load.enter("hung")  # each request waits for message_timeout, then fails open
        load.wait_for("hung", 6)
        stack.wait_sidecar_health_in_envoy(healthy=False)
        load.enter("hung, skipped")
        load.wait_for("hung, skipped", 60)
        timeouts_while_hung = message_timeouts(stack) - timeouts_before

        load.enter("resuming")
        stack.resume_sidecar()
        stack.wait_sidecar_health_in_envoy(healthy=True)
        load.enter("resumed")
        load.wait_for("resumed", 150)

    outcomes = load.outcomes
    hung_max = max(o.seconds for o in load.within(["hung"]))
    print(
        f"\n{len(outcomes)} requests; max latency while hung {hung_max * 1000:.0f} ms "
        f"({timeouts_while_hung} message timeouts), once skipped "
        f"{max(o.seconds for o in load.within(['hung, skipped'])) * 1000:.0f} ms, "
        f"sidecar dead {max(o.seconds for o in load.within(DEAD)) * 1000:.0f} ms"
    )
    record_property("max_latency_hung_ms", round(hung_max * 1000))

    assert [o for o in outcomes if o.status != 200] == []
    assert [o for o in outcomes if o.version not in ("v1", expected[o.user])] == []
    assert stack.envoy.pid == envoy_pid  # never restarted

    for phases in (DEAD, HUNG):
        failed_open = load.within(phases)
        assert {(o.version, o.seen_cohort) for o in failed_open} == {("v1", "-")}, phases
    assert timeouts_while_hung > 0  # the hung sidecar was really asked, not only skipped

    for phase in UP:
        decided = load.within([phase])
        assert [o for o in decided if (o.version, o.seen_cohort) != (expected[o.user],) * 2] == []
        assert any(o.version == "v2" for o in decided), f"no v2 in phase {phase!r}"
