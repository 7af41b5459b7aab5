"""Follow the rollout state in etcd: what a sidecar runs instead of polling a file.

Contract of :class:`StateWatch` (it runs on an :class:`EtcdSession`'s loop):

- On start and after every reconnect it reads the state key (a linearizable read, so never
  older than what it had), hands it over if it is newer, then watches from just after that
  read: every later put reaches ``on_state`` as soon as etcd sends it (milliseconds).
- ``on_state`` is called on the session's thread, once per new state, in revision order;
  a state already handed over is never handed over again. It must not block. ``synced``
  is set once the first read succeeded (a state, if any, was handed over before it).
- ``on_error`` (optional, same thread) hears of the first failure of each outage and of
  every rejected value; the watch logs them itself.
- A lost member, a lost quorum, a cancelled watch, compacted history, any failure at all:
  the last known state stays where it is (``last``), nothing is raised to the caller, the
  failure is counted by class in ``faults`` (see etcd_faults.py; ``unexpected`` for what is
  not etcd's), and it reconnects with bounded, jittered
  exponential backoff (:class:`~extproc.rollout.stores.backoff.Backoff`), trying the other
  members in turn. A value that is not a rollout state is logged and skipped; a deleted
  key keeps the last known state.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable

from extproc.rollout.state import RolloutState
from extproc.rollout.stores.backoff import Backoff
from extproc.rollout.stores.etcd_faults import fault_of
from extproc.rollout.stores.etcd_session import EtcdSession
from extproc.rollout.stores.etcd_types import Entry

log = logging.getLogger("extproc.rollout.etcd")
STABLE_SECONDS = 1.0  # a connection that lasted this long resets the backoff


class StateWatch:
    def __init__(
        self,
        session: EtcdSession,
        key: str,
        on_state: Callable[[RolloutState], None],
        on_error: Callable[[Exception], None] | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        self.key = key
        self.last: RolloutState | None = None
        self.connected = False
        self.synced = threading.Event()
        self.failures = 0  # connection attempts or watches that failed
        self.faults: Counter[str] = Counter()  # the same, by class
        self.rejected = 0  # values that were not a rollout state
        self._on_state = on_state
        self._on_error = on_error
        self._backoff = backoff or Backoff()
        self._session = session
        self._seen = 0  # mod revision of the last value handed over (or rejected)
        self._future = session.spawn(self._run())

    def stop(self) -> None:
        """Stop following (the session stays open)."""
        self._future.cancel()

    async def _run(self) -> None:
        client = self._session.client
        while True:
            began = time.monotonic()
            try:
                entry, revision = await client.get(self.key)
                self._connected(client.endpoint)
                if entry is not None:
                    self._offer(entry)
                self.synced.set()
                async for event in client.watch(self.key, revision + 1):
                    if event.kind == "put":
                        self._offer(event.entry)
                    else:
                        log.warning("rollout state %s was deleted: keeping the last one", self.key)
            except Exception as exc:  # any failure: keep the last state, reconnect
                self._lost(exc)
            if time.monotonic() - began >= STABLE_SECONDS:
                self._backoff.reset()
            await asyncio.sleep(self._backoff.delay())

    def _connected(self, endpoint: str) -> None:
        if not self.connected:
            log.info("following rollout state %s on etcd %s", self.key, endpoint)
        self.connected = True

    def _lost(self, exc: Exception) -> None:
        # The first failure of an outage is news; the retries that follow are not.
        news = self.connected or self.failures == 0
        log.log(
            logging.WARNING if news else logging.DEBUG,
            "rollout state watch lost (%s); keeping revision %s, reconnecting",
            exc,
            self.last.revision if self.last else None,
        )
        self.connected = False
        self.failures += 1
        self.faults[fault_of(exc)] += 1
        if news:
            self._tell(exc)

    def _offer(self, entry: Entry) -> None:
        if entry.mod_revision <= self._seen:
            return  # already handed over before a reconnect
        self._seen = entry.mod_revision
        try:
            state = RolloutState.from_json(json.loads(entry.value))
        except (KeyError, TypeError, ValueError) as exc:
            self.rejected += 1
            log.error("%s is not a rollout state, keeping the last one: %s", entry.key, exc)
            self._tell(exc)
            return
        self.last = state
        try:
            self._on_state(state)
        except Exception:  # the watch must outlive a faulty consumer
            log.exception("rollout state consumer failed on revision %d", state.revision)

    def _tell(self, exc: Exception) -> None:
        if self._on_error is not None:
            try:
                self._on_error(exc)
            except Exception:
                log.exception("rollout state error consumer failed")
