"""Steady traffic through a fleet of gateways, and the cohort invariant checked on it.

:class:`Traffic` sends requests from a few threads, round-robin over many users and all
gateways, at a bounded rate, and records each answer as an :class:`Observation`. A gateway
whose Envoy the chaos run has taken down (``Traffic.down``, ``Traffic.epochs``) is
expected to fail; any other failure is a client error.

:func:`cohort_violations` is pure: given the rollout's states in order (the audit log,
after the rules' own share while pending) it says, per gateway and user, whether the
versions that user heard could have come from that sequence: a user changes cohort only
when the share changed, and only in the direction of the change. Answers served without
the sidecar (Envoy's fail-open: the model saw no cohort header) are left out and counted.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from extproc.core.decide import Decider
from extproc.core.loader import load_rules
from extproc.rollout.effective import apply_state
from extproc.rollout.state import Phase, RolloutState
from extproc.stack import client
from extproc.stack.stack import Stack

SEEN_COHORT = "x-tts-seen-cohort"  # the stand-in echoes the cohort header it got ('-': none)


@dataclass(frozen=True, slots=True)
class Observation:
    at: float  # wall clock, when the answer came
    gateway: int
    user: str
    version: str | None  # the model version that answered; None: no answer
    status: int  # 0: no answer at all
    fail_open: bool  # served without the sidecar's decision


class Traffic:
    """``threads`` senders, each at most ``rate`` requests per second, until :meth:`stop`."""

    def __init__(
        self, gateways: Sequence[Stack], users: Sequence[str], threads: int = 3, rate: float = 40
    ) -> None:
        self.gateways = list(gateways)
        self.users = list(users)
        self.observations: list[Observation] = []
        self.outcomes: Counter[str] = Counter()
        self.down: set[int] = set()  # gateways whose Envoy is down on purpose
        self.epochs = [0] * len(self.gateways)  # bumped when a gateway goes down or up
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._period = 1.0 / rate
        self._threads = [
            threading.Thread(target=self._send, args=(k, threads), daemon=True)
            for k in range(threads)
        ]

    def start(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(15)

    def set_down(self, gateway: int, down: bool) -> None:
        with self._lock:
            self.epochs[gateway] += 1
            (self.down.add if down else self.down.discard)(gateway)

    def _send(self, offset: int, stride: int) -> None:
        n = offset
        while not self._stop.is_set():
            began = time.monotonic()
            user = self.users[n % len(self.users)]
            gateway = (n // len(self.users) + n) % len(self.gateways)
            n += stride
            with self._lock:
                epoch, expected_down = self.epochs[gateway], gateway in self.down
            try:
                reply = client.send(self.gateways[gateway], {"x-user-id": user}, timeout=5)
                status, version = reply.status, reply.version
                fail_open = reply.headers.get(SEEN_COHORT, "-") == "-"
            except OSError:
                status, version, fail_open = 0, None, False
            with self._lock:
                planned = expected_down or gateway in self.down or self.epochs[gateway] != epoch
            if status == 200:
                kind = "fail_open" if fail_open else "ok"
            else:
                kind = "gateway_down_on_purpose" if planned else "client_error"
            self.outcomes[kind] += 1
            self.observations.append(
                Observation(time.time(), gateway, user, version, status, fail_open)
            )
            self._stop.wait(max(0.0, self._period - (time.monotonic() - began)))


def share_sequence(audit: Iterable[dict[str, object]], rollout: str) -> list[RolloutState]:
    """The states the sidecars may have served, in order: pending first (the rules' own
    share), then each audit entry's resulting phase and share."""
    states = [RolloutState(rollout)]
    for entry in audit:
        share = round(float(str(entry["to_share"]).rstrip("%")) * 100)
        states.append(RolloutState(rollout, phase=Phase(str(entry["to_phase"])), share=share))
    return states


def cohort_violations(
    observations: Iterable[Observation], states: Sequence[RolloutState], rules_path: Path
) -> tuple[list[str], Counter[str]]:
    """(violations, counts): a violation names a gateway and user whose answers do not fit
    the state sequence; counts has ``checked`` answers, ``users``, ``fail_open`` answers
    left out, and the cohort changes seen (``v1->v2``, ``v2->v1``)."""
    rules = load_rules(rules_path)
    deciders = [Decider(apply_state(rules, s)) for s in states]
    heard: dict[tuple[int, str], list[str]] = {}
    counts: Counter[str] = Counter()
    for o in sorted(observations, key=lambda o: o.at):
        if o.status != 200 or o.version is None:
            continue
        if o.fail_open:
            counts["fail_open"] += 1
            continue
        counts["checked"] += 1
        versions = heard.setdefault((o.gateway, o.user), [])
        if not versions or versions[-1] != o.version:
            if versions:
                counts[f"{versions[-1]}->{o.version}"] += 1
            versions.append(o.version)
    counts["users"] = len({user for _, user in heard})
    violations = []
    for (gateway, user), versions in sorted(heard.items()):
        expected = _collapsed(d.decide({"x-user-id": user}).cohort.value for d in deciders)
        if not _fits(versions, expected):
            violations.append(
                f"gateway {gateway} user {user}: heard {versions}, allowed {expected}"
            )
    return violations, counts


def _collapsed(values: Iterable[str]) -> list[str]:
    out: list[str] = []
    for value in values:
        if not out or out[-1] != value:
            out.append(value)
    return out


def _fits(heard: Sequence[str], allowed: Sequence[str]) -> bool:
    """Whether ``heard`` (collapsed) can be read off ``allowed`` (collapsed) in order: both
    alternate, so it fits iff it starts somewhere in ``allowed`` with room for its length."""
    return any(
        allowed[i] == heard[0] and len(allowed) - i >= len(heard) for i in range(len(allowed))
    )
