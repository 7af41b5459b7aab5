"""An etcd client on an event loop of its own, for callers that block or live elsewhere.

The state store's interface is synchronous (the controller calls it from worker threads),
and the sidecar's event loop serves requests and should not also carry etcd's gRPC traffic.
So each process that talks to etcd starts one :class:`EtcdSession`: a daemon thread running
an asyncio loop with one :class:`~extproc.rollout.stores.etcd_client.EtcdClient` on it.

- ``call(fn)`` runs ``fn(client)`` there and waits (from any thread but the session's own);
  it raises what ``fn`` raised, or EtcdUnavailable if the whole call overran its deadline.
- ``spawn(coro)`` starts a background task there (watches, leases); ``close()`` cancels
  them, closes the channels and stops the thread. Safe to call twice.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, TypeVar

from extproc.rollout.stores.etcd_client import DEFAULT_DEADLINE, DEFAULT_TIMEOUT, EtcdClient
from extproc.rollout.stores.etcd_types import EtcdUnavailable

T = TypeVar("T")
log = logging.getLogger("extproc.rollout.etcd")
CLOSE_SECONDS = 5.0


class EtcdSession:
    def __init__(
        self,
        endpoints: Sequence[str],
        timeout: float = DEFAULT_TIMEOUT,
        deadline: float = DEFAULT_DEADLINE,
    ) -> None:
        self.endpoints = tuple(endpoints)
        self.client = EtcdClient(self.endpoints, timeout, deadline)
        # The client gives up after ``deadline`` plus at most one request in flight.
        self.call_timeout = deadline + timeout + 1.0
        self.loop = asyncio.new_event_loop()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="etcd-session", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def call(self, fn: Callable[[EtcdClient], Awaitable[T]], timeout: float | None = None) -> T:
        """``fn(client)`` on the session's loop; blocks until it is done."""
        if threading.current_thread() is self._thread:
            raise RuntimeError("EtcdSession.call from the session's own thread would deadlock")
        future = self.spawn(_await(fn, self.client))
        try:
            return future.result(timeout or self.call_timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise EtcdUnavailable(
                f"etcd did not answer within {timeout or self.call_timeout:.1f}s "
                f"({', '.join(self.endpoints)})",
                "timeout",
            ) from None

    def spawn(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Run ``coro`` as a task on the session's loop."""
        if self._closed:
            coro.close()
            raise RuntimeError("the etcd session is closed")
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def close(self) -> None:
        """Cancel the session's tasks, close the channels, stop the thread."""
        if self._closed:
            return
        self._closed = True
        if self._thread.is_alive():
            done = asyncio.run_coroutine_threadsafe(self._shutdown(), self.loop)
            try:
                done.result(CLOSE_SECONDS)
            except Exception as exc:  # closing anyway: say so, do not fail the caller's exit
                log.warning("etcd session did not close cleanly: %r", exc)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(CLOSE_SECONDS)
        if not self._thread.is_alive():
            self.loop.close()

    async def _shutdown(self) -> None:
        await _cancel_others()
        await self.client.close()
        await _cancel_others()  # what grpc left behind (a watch's request feeder)


async def _await(fn: Callable[[EtcdClient], Awaitable[T]], client: EtcdClient) -> T:
    return await fn(client)


async def _cancel_others() -> None:
    current = asyncio.current_task()
    tasks = [t for t in asyncio.all_tasks() if t is not current]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
