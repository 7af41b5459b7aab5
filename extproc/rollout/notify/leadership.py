"""The ``leadership`` event: announced by the replica that takes over (etcd fleets).

:class:`LeadershipWatch` polls the election every ``interval`` seconds in a thread of its
own; each time this replica starts a new term it reads the rollout's state and publishes
one leadership event (revision, phase, share as the new leader found them). A replica that
loses the lead says nothing: it cannot know it is not merely cut off.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from extproc.core.model import percent
from extproc.rollout.notify import events
from extproc.rollout.notify.notifier import Notifier

log = logging.getLogger("extproc.rollout.notify")


class Election(Protocol):
    identity: str
    terms: int  # how often this candidate has been elected

    def is_leader(self) -> bool: ...


class StateLike(Protocol):
    @property
    def rollout(self) -> str: ...
    @property
    def revision(self) -> int: ...
    @property
    def stage(self) -> int: ...
    @property
    def share(self) -> int: ...  # buckets
    @property
    def phase(self) -> str: ...


class LeadershipWatch:
    def __init__(
        self,
        election: Election,
        read_state: Callable[[], StateLike | None],
        notifier: Notifier,
        interval: float = 0.25,
    ) -> None:
        self._election = election
        self._read_state = read_state
        self._notifier = notifier
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="notify-leadership", daemon=True)

    def __enter__(self) -> LeadershipWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5.0)

    def _run(self) -> None:
        announced_term = 0
        while not self._stop.wait(self._interval):
            term = self._election.terms
            if term == announced_term or not self._election.is_leader():
                continue
            try:
                state = self._read_state()
            except Exception as exc:  # the store is unreachable: try again next poll
                log.warning("notify: cannot read the state for the leadership event: %s", exc)
                continue
            announced_term = term
            if state is None:
                continue
            leader = self._election.identity
            self._notifier.publish(
                events.leadership(
                    state.rollout,
                    state.revision,
                    str(state.phase),
                    percent(state.share),
                    state.stage,
                    f"{leader} (term {term})",
                    time.time(),
                )
            )
