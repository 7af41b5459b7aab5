"""The notifier: one event per transition, fanned out to every sink's delivery worker.

The controller calls :meth:`Notifier.transition` right after a transition is written (one
hook). That call builds the event, deduplicates it and queues it for each sink that wants
its kind; it never blocks on the network and never raises, so a notification can neither
delay nor break a rollback.

Deduplication across controller replicas: only the leader writes transitions (the store
fences every write with its term), and a replica announces only the transitions it wrote,
so each revision is announced once in a fleet. The notifier also remembers the last
DEDUP_MEMORY event ids it announced and drops a repeat. A ``leadership`` event comes from
the replica that took over (notify.leadership).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Iterator

from extproc.rollout.notify import events
from extproc.rollout.notify.config import SinkSpec
from extproc.rollout.notify.delivery import (
    BACKOFF_CAP,
    BACKOFF_INITIAL,
    QUEUE_CAPACITY,
    SinkWorker,
    Transport,
    post,
)
from extproc.rollout.notify.events import Event, TransitionLike
from extproc.rollout.notify.metrics import NotifyMetrics
from extproc.rollout.notify.sinks import Sink, build_sinks

log = logging.getLogger("extproc.rollout.notify")

DEDUP_MEMORY = 1024
CLOSE_TIMEOUT = 5.0  # seconds to finish queued deliveries at shutdown


class Notifier:
    def __init__(
        self,
        sinks: tuple[Sink, ...],
        *,
        identity: str = "",
        metrics: NotifyMetrics | None = None,
        capacity: int = QUEUE_CAPACITY,
        transport: Transport = post,
        backoff: tuple[float, float] = (BACKOFF_INITIAL, BACKOFF_CAP),
    ) -> None:
        self.identity = identity
        self.metrics = metrics or NotifyMetrics()
        self.workers = tuple(
            SinkWorker(sink, self.metrics, capacity=capacity, transport=transport, backoff=backoff)
            for sink in sinks
        )
        for sink in sinks:
            self.metrics.add_sink(sink.name)
        self._announced: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()
        self._started = False

    def transition(self, transition: TransitionLike) -> None:
        """Announce a written transition (the controller's hook). Never raises."""
        try:
            self.publish(events.from_transition(transition, self.identity))
        except Exception:
            log.exception("notify: could not announce revision %s", transition.revision)

    def publish(self, event: Event) -> bool:
        """Queue ``event`` for every sink that wants it; False if it was announced before."""
        with self._lock:
            if event.id in self._announced:
                return False
            self._announced[event.id] = None
            if len(self._announced) > DEDUP_MEMORY:
                self._announced.popitem(last=False)
        self.metrics.record_event(event.kind)
        for worker in self.workers:
            if worker.sink.wants(event):
                worker.offer(event)
        return True

    def start(self) -> None:
        if not self._started:
            self._started = True
            for worker in self.workers:
                worker.start()

    def close(self, timeout: float = CLOSE_TIMEOUT) -> None:
        """Finish queued deliveries for up to ``timeout`` seconds (all sinks at once)."""
        threads = [threading.Thread(target=w.close, args=(timeout,)) for w in self.workers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    @contextlib.contextmanager
    def running(self, close_timeout: float = CLOSE_TIMEOUT) -> Iterator[Notifier]:
        self.start()
        try:
            yield self
        finally:
            self.close(close_timeout)


def notifier_for(specs: tuple[SinkSpec, ...], identity: str) -> Notifier | None:
    """A notifier for the policy's sinks, secrets read now (ValueError, located, when one is
    missing); None without sinks."""
    if not specs:
        return None
    return Notifier(build_sinks(specs), identity=identity)
