"""Fakes for the etcd layer's unit tests: no etcd, no sockets.

- :class:`FakeMember` stands in for one member's gRPC stubs inside a real
  :class:`~extproc.rollout.stores.etcd_client.EtcdClient`: each call takes the next scripted
  answer (an exception to raise, or a reply) of its method.
- :func:`rpc_error` builds the gRPC error a member would send.
- :class:`FakeEtcd` is an in-memory client with the EtcdClient's plain-data interface
  (get, txn, grant, keepalive, revoke, watch, last) whose methods fail on demand;
  :class:`FakeSession` runs it on the test's own event loop.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Coroutine, Sequence
from typing import Any

import grpc
from aetcd import rpc

from extproc.rollout.stores.etcd_types import Compare, Entry, Put, TxnResult, WatchEvent


def rpc_error(code: str, details: str) -> grpc.aio.AioRpcError:
    metadata = grpc.aio.Metadata()
    return grpc.aio.AioRpcError(getattr(grpc.StatusCode, code), metadata, metadata, details)


def range_reply(revision: int, key: str = "", value: bytes = b"") -> Any:
    kvs = [rpc.KeyValue(key=key.encode(), value=value, mod_revision=revision)] if key else []
    return rpc.RangeResponse(header=rpc.ResponseHeader(revision=revision), kvs=kvs)


class _Stub:
    def __init__(self, member: FakeMember) -> None:
        self._member = member

    def __getattr__(self, method: str) -> Any:
        if method == "LeaseKeepAlive":  # a stream: the scripted answer is its replies
            return lambda requests, **_: _Stream(self._member, method)

        async def call(request: Any, **_: Any) -> Any:
            self._member.asked.append(method)
            answer = self._member.script[method].popleft()
            if isinstance(answer, BaseException):
                raise answer
            return answer

        return call


class _Stream:
    """A response stream whose replies (or error) are the member's next scripted answer."""

    def __init__(self, member: FakeMember, method: str) -> None:
        member.asked.append(method)
        self._answer = member.script[method].popleft()

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._replies()

    async def _replies(self) -> AsyncIterator[Any]:
        if isinstance(self._answer, BaseException):
            raise self._answer
        for reply in self._answer:
            yield reply

    def cancel(self) -> None:
        return None


class FakeMember:
    """One member: ``script[method]`` is the queue of its answers to that method."""

    def __init__(self, target: str, **script: Sequence[Any]) -> None:
        self.target = target
        self.script: dict[str, deque[Any]] = defaultdict(deque)
        for method, answers in script.items():
            self.script[method].extend(answers)
        self.asked: list[str] = []
        self.kv = self.lease = self.watch = _Stub(self)

    def open(self) -> FakeMember:
        return self

    async def close(self) -> None:
        return None


class FakeEtcd:
    """An in-memory etcd for the loops' tests. ``fail[method]`` is a queue of exceptions
    that the next calls of ``method`` raise (then it works)."""

    def __init__(self) -> None:
        self.data: dict[str, Entry] = {}
        self.revision = 1
        self.fail: dict[str, deque[BaseException]] = defaultdict(deque)
        self.leases: dict[int, int] = {}
        self.changed = asyncio.Event()
        self._ids = itertools.count(100)
        self.endpoint = "fake:1"

    def _maybe_fail(self, method: str) -> None:
        if self.fail[method]:
            raise self.fail[method].popleft()

    def put(self, key: str, value: bytes, lease: int = 0) -> None:
        self.revision += 1
        old = self.data.get(key)
        created = old.create_revision if old is not None else self.revision
        self.data[key] = Entry(key, value, self.revision, created, lease)
        self.changed.set()

    async def get(self, key: str, timeout: float | None = None) -> tuple[Entry | None, int]:
        self._maybe_fail("get")
        return self.data.get(key), self.revision

    async def txn(
        self, compares: Sequence[Compare], puts: Sequence[Put], reads: Sequence[str] = ()
    ) -> TxnResult:
        self._maybe_fail("txn")
        for c in compares:
            entry = self.data.get(c.key)
            have = (
                (entry.create_revision if entry else 0)
                if c.target == "create"
                else (entry.mod_revision if entry else 0)
            )
            if have != c.value:
                return TxnResult(False, self.revision, {k: self.data.get(k) for k in reads})
        for p in puts:
            self.put(p.key, p.value, p.lease)
        return TxnResult(True, self.revision)

    async def grant(self, ttl: int) -> int:
        self._maybe_fail("grant")
        lease = next(self._ids)
        self.leases[lease] = ttl
        return lease

    async def keepalive(self, lease: int, timeout: float | None = None) -> int:
        self._maybe_fail("keepalive")
        return self.leases.get(lease, 0)

    async def revoke(self, lease: int) -> None:
        self._maybe_fail("revoke")
        self.leases.pop(lease, None)
        for key in [k for k, e in self.data.items() if e.lease == lease]:
            del self.data[key]
        self.changed.set()

    async def watch(self, key: str, start_revision: int) -> AsyncIterator[WatchEvent]:
        self._maybe_fail("watch")
        seen = start_revision - 1
        while True:
            entry = self.data.get(key)
            if entry is not None and entry.mod_revision > seen:
                seen = entry.mod_revision
                yield WatchEvent("put", entry)
            self.changed.clear()
            await self.changed.wait()
            self._maybe_fail("watch")


class FakeSession:
    """What the loops need of an EtcdSession, on the running event loop."""

    def __init__(self, client: FakeEtcd) -> None:
        self.client = client
        self.tasks: list[asyncio.Task[Any]] = []

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.append(task)
        return task

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
