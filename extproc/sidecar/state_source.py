"""Where a sidecar gets the rollout state: a file it polls, or etcd it watches.

``open_state_source(spec, poll_seconds)`` reads the ``--state`` setting (see
extproc.addresses): '' -> None (the rules' own share), a path or file:///path ->
:class:`FileStateSource`, etcd://... -> :class:`EtcdStateSource`. Both feed the
RulesHolder, which builds a whole new snapshot and swaps it, and both:

- ``await first(holder)``: the state before the first rules load, so that the first
  snapshot already has it. Bounded: with etcd unreachable the sidecar starts on the rules'
  own share (as with a missing file) and applies the state as soon as etcd answers.
- ``await follow(holder, report)``: until cancelled, hand every new state to the holder
  and ``report`` the outcome ('loaded', 'unchanged', 'failed') on the event loop, where the
  server counts it. A failure keeps the last known state serving.
- ``close()``: stop following and release the connection.
- ``collector()``: Prometheus metrics of the source's own health, or None (etcd: the
  watch's connection and fault counts, see watch_metrics.py; a file has none).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from extproc.addresses import EtcdTarget, FileLocation, parse_store_url
from extproc.rollout.state import RolloutState
from extproc.rollout.stores.state_store import read_state_file
from extproc.sidecar.snapshot import ReloadResult, RulesHolder
from extproc.sidecar.watch import ChangeDetector
from extproc.sidecar.watch_metrics import StateWatchCollector

if TYPE_CHECKING:
    from prometheus_client.registry import Collector

    from extproc.rollout.stores.etcd_watch import StateWatch

log = logging.getLogger("extproc.rules")
FIRST_WAIT_SECONDS = 2.0  # how long start-up waits for etcd before serving without state
Report = Callable[[str], None]


class StateSource(Protocol):
    async def first(self, holder: RulesHolder) -> ReloadResult: ...
    async def follow(self, holder: RulesHolder, report: Report) -> None: ...
    def close(self) -> None: ...
    def collector(self) -> Collector | None: ...


def open_state_source(spec: str, poll_seconds: float) -> StateSource | None:
    """The source ``spec`` names (ValueError if it names none); None for ''."""
    if not spec:
        return None
    location = parse_store_url(spec)
    if isinstance(location, FileLocation):
        return FileStateSource(location.path, poll_seconds)
    return EtcdStateSource(location)


class FileStateSource:
    """Polls the state file's path every ``poll_seconds`` (symlink swaps included)."""

    def __init__(self, path: Path, poll_seconds: float) -> None:
        self.path = path
        self.poll_seconds = poll_seconds
        self._detector = ChangeDetector(path)  # baseline first: a racing write is still seen

    async def first(self, holder: RulesHolder) -> ReloadResult:
        return self._read(holder)

    async def follow(self, holder: RulesHolder, report: Report) -> None:
        while True:
            await asyncio.sleep(self.poll_seconds)
            if self._detector.changed():
                report(self._read(holder).outcome)

    def _read(self, holder: RulesHolder) -> ReloadResult:
        try:
            state = read_state_file(self.path)
        except (OSError, ValueError) as exc:
            return holder.state_failed(exc)
        return holder.set_state(state)

    def close(self) -> None:
        return None

    def collector(self) -> Collector | None:
        return None


class EtcdStateSource:
    """Watches the rollout's state key; see extproc.rollout.stores.etcd_watch for the contract."""

    def __init__(self, target: EtcdTarget, first_wait: float = FIRST_WAIT_SECONDS) -> None:
        from extproc.rollout.stores.etcd_store import EtcdStateStore  # grpc: only when used

        self.target = target
        self.first_wait = first_wait
        self._store = EtcdStateStore(target)
        self._events: asyncio.Queue[RolloutState | Exception] | None = None
        self.watch: StateWatch | None = None

    async def first(self, holder: RulesHolder) -> ReloadResult:
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[RolloutState | Exception] = asyncio.Queue()
        self._events = events

        def push(item: RolloutState | Exception) -> None:  # on the etcd session's thread
            loop.call_soon_threadsafe(events.put_nowait, item)

        watch = self.watch = self._store.watch_state(push, push)
        # The watch hands its first state over before it says it is synced; that hand-over
        # is queued on this loop before the worker thread below returns, so it is seen.
        synced = await asyncio.to_thread(watch.synced.wait, self.first_wait)
        latest: RolloutState | None = None
        while not events.empty():
            item = events.get_nowait()
            latest = item if isinstance(item, RolloutState) else latest
        if latest is not None:
            return holder.set_state(latest)
        if synced:
            return ReloadResult("unchanged", None)  # etcd answered: no state stored yet
        return holder.state_failed(
            OSError(
                f"no answer from etcd within {self.first_wait:g}s ({self.target.url()}): "
                "serving the rules' share until it answers"
            )
        )

    async def follow(self, holder: RulesHolder, report: Report) -> None:
        if self._events is None:
            raise RuntimeError("EtcdStateSource.follow before first")
        while True:
            item = await self._events.get()
            if isinstance(item, RolloutState):
                report(holder.set_state(item).outcome)
            else:
                report("failed")  # the watch logged it; the last state keeps serving

    def close(self) -> None:
        self._store.close()

    def collector(self) -> Collector | None:
        return StateWatchCollector(self.watch) if self.watch is not None else None
