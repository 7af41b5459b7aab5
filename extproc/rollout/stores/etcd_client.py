"""The project's one door to etcd: an asyncio client over the members of a cluster.

Built on aetcd's etcd v3 gRPC bindings (``aetcd.rpc``: the generated messages and stubs);
its convenience client is not used because it speaks to a single member, cannot ask for a
leader, cannot limit a range and does not resume watches. Contract:

- ``EtcdClient(endpoints)`` starts each call at the member that answered last. Each failed
  answer is classified (:func:`~extproc.rollout.stores.etcd_faults.classify`) and counted in
  ``faults``; a member that cannot be reached, times out (etcd's own "context deadline
  exceeded" included), has no raft leader, saw the leader change or is overloaded is
  skipped and the next one tried. When none answers, it tries them all again after a short
  pause, until ``deadline`` seconds have passed (so that a raft election after a lost leader,
  about a second, is bridged); then :class:`EtcdUnavailable` (an ``OSError``) with the
  outage's class (``quorum_lost``, ``unreachable``, ...), a diagnosis for the operator
  (N of M members reachable, what to do) and what each member said. Any other answer is a
  refusal: :class:`EtcdError` at once.
- Every call carries etcd's require-leader metadata, so a member cut off from the quorum
  refuses at once (and cancels its watches) instead of hanging or serving stale data.
- Only plain data comes out (:class:`Entry`, :class:`TxnResult`, :class:`WatchEvent`).
- grpc.aio binds channels to the event loop of first use: one client, one loop
  (:class:`~extproc.rollout.stores.etcd_session.EtcdSession` gives it a loop of its own).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import grpc
from aetcd import rpc

from extproc.rollout.stores.etcd_faults import RETRIED, Fault, classify, diagnose
from extproc.rollout.stores.etcd_types import (
    Compare,
    Entry,
    EtcdError,
    EtcdUnavailable,
    Put,
    TxnResult,
    WatchEvent,
)

T = TypeVar("T")
DEFAULT_TIMEOUT = 2.0  # seconds per request to one member
DEFAULT_DEADLINE = 5.0  # seconds per call, all members and rounds included
ROUND_PAUSE = (0.05, 0.5)  # pause between rounds over all members: first, most
REQUIRE_LEADER = (("hasleader", "true"),)
# A restarted member must be found again within a second, not after grpc's default 2 min
# reconnect backoff; keepalive pings notice a member that vanished without closing.
CHANNEL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
)


class MemberFault(Exception):
    """Raised inside a call's operation when a member gave no usable answer without a gRPC
    error (e.g. a keepalive stream that closed before answering)."""

    def __init__(self, fault: Fault, text: str) -> None:
        super().__init__(text)
        self.fault = fault


class _Member:
    """One member's channel and stubs, made on first use (inside the client's loop)."""

    def __init__(self, target: str) -> None:
        self.target = target
        self._channel: grpc.aio.Channel | None = None
        self.kv: Any = None
        self.lease: Any = None
        self.watch: Any = None

    def open(self) -> _Member:
        if self._channel is None:
            self._channel = rpc.insecure_channel(self.target, options=CHANNEL_OPTIONS)
            self.kv = rpc.KVStub(self._channel)
            self.lease = rpc.LeaseStub(self._channel)
            self.watch = rpc.WatchStub(self._channel)
        return self

    async def close(self) -> None:
        if self._channel is not None:
            channel, self._channel = self._channel, None
            await channel.close()


class EtcdClient:
    """See the module docstring. ``timeout`` bounds one request to one member,
    ``deadline`` a whole call."""

    def __init__(
        self,
        endpoints: Sequence[str],
        timeout: float = DEFAULT_TIMEOUT,
        deadline: float = DEFAULT_DEADLINE,
    ) -> None:
        if not endpoints:
            raise ValueError("at least one etcd endpoint is required")
        self._members = [_Member(e) for e in endpoints]
        self._current = 0
        self.timeout = timeout
        self.deadline = deadline
        self.faults: Counter[str] = Counter()  # every member's failed answer, by class

    @property
    def endpoint(self) -> str:
        """The member tried first (the last one that answered)."""
        return self._members[self._current].target

    async def _call(self, what: str, op: Callable[[_Member], Awaitable[T]]) -> T:
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self.deadline
        pause = ROUND_PAUSE[0]
        while True:
            start = self._current
            said: dict[str, str] = {}
            faults: dict[str, Fault] = {}
            for k in range(len(self._members)):
                index = (start + k) % len(self._members)
                member = self._members[index].open()
                try:
                    result = await op(member)
                except grpc.aio.AioRpcError as exc:
                    fault, text = classify(exc.code().name, exc.details() or ""), _say(exc)
                except MemberFault as exc:
                    fault, text = exc.fault, str(exc)
                else:
                    self._current = index
                    return result
                self.faults[fault.value] += 1
                if fault not in RETRIED:
                    raise EtcdError(f"etcd {what} on {member.target}: {text}", fault.value)
                said[member.target], faults[member.target] = text, fault
            if loop.time() + pause >= give_up:
                kind, diagnosis = diagnose(faults, len(self._members))
                members = "; ".join(f"{target}: {error}" for target, error in said.items())
                raise EtcdUnavailable(f"etcd {what}: {diagnosis} ({members})", kind, diagnosis)
            await asyncio.sleep(pause)
            pause = min(pause * 2, ROUND_PAUSE[1])

    async def get(self, key: str, timeout: float | None = None) -> tuple[Entry | None, int]:
        """``key``'s entry (None if absent) and the store revision it was read at;
        ``timeout`` per member overrides the client's."""

        async def op(m: _Member) -> tuple[Entry | None, int]:
            reply = await m.kv.Range(
                rpc.RangeRequest(key=key.encode()),
                timeout=timeout or self.timeout,
                metadata=REQUIRE_LEADER,
            )
            entry = _entry(reply.kvs[0]) if reply.kvs else None
            return entry, int(reply.header.revision)

        return await self._call(f"get {key}", op)

    async def last(self, prefix: str, limit: int) -> list[Entry]:
        """The last ``limit`` entries under ``prefix`` in key order (oldest first)."""
        start = prefix.encode()
        request = rpc.RangeRequest(
            key=start,
            range_end=_prefix_end(start),
            limit=limit,
            sort_order=rpc.RangeRequest.DESCEND,
            sort_target=rpc.RangeRequest.KEY,
        )

        async def op(m: _Member) -> list[Entry]:
            reply = await m.kv.Range(request, timeout=self.timeout, metadata=REQUIRE_LEADER)
            return [_entry(kv) for kv in reversed(reply.kvs)]

        return await self._call(f"range {prefix}", op)

    async def txn(
        self, compares: Sequence[Compare], puts: Sequence[Put], reads: Sequence[str] = ()
    ) -> TxnResult:
        """All ``puts`` at once if every compare holds; otherwise nothing, and ``reads``
        come back as they are now (to tell the caller why)."""
        request = rpc.TxnRequest(
            compare=[_compare(c) for c in compares],
            success=[
                rpc.RequestOp(
                    request_put=rpc.PutRequest(key=p.key.encode(), value=p.value, lease=p.lease)
                )
                for p in puts
            ],
            failure=[rpc.RequestOp(request_range=rpc.RangeRequest(key=k.encode())) for k in reads],
        )

        async def op(m: _Member) -> TxnResult:
            reply = await m.kv.Txn(request, timeout=self.timeout, metadata=REQUIRE_LEADER)
            found: dict[str, Entry | None] = {}
            if not reply.succeeded:
                for key, response in zip(reads, reply.responses, strict=True):
                    kvs = response.response_range.kvs
                    found[key] = _entry(kvs[0]) if kvs else None
            return TxnResult(bool(reply.succeeded), int(reply.header.revision), found)

        return await self._call("txn", op)

    async def grant(self, ttl: int) -> int:
        """A new lease of ``ttl`` seconds; its id."""

        async def op(m: _Member) -> int:
            reply = await m.lease.LeaseGrant(
                rpc.LeaseGrantRequest(TTL=ttl), timeout=self.timeout, metadata=REQUIRE_LEADER
            )
            if reply.error:
                raise EtcdError(f"etcd lease grant: {reply.error}")
            return int(reply.ID)

        return await self._call("lease grant", op)

    async def keepalive(self, lease: int, timeout: float | None = None) -> int:
        """Renew ``lease``; the seconds it now has left (0: the lease is gone). ``timeout``
        per member overrides the client's (a short lease needs a quick move to the next)."""

        async def op(m: _Member) -> int:
            call = m.lease.LeaseKeepAlive(
                iter([rpc.LeaseKeepAliveRequest(ID=lease)]),
                timeout=timeout or self.timeout,
                metadata=REQUIRE_LEADER,
            )
            try:
                async for reply in call:
                    return int(reply.TTL)
            except grpc.aio.AioRpcError as exc:
                if exc.code() is grpc.StatusCode.NOT_FOUND:
                    return 0
                raise
            finally:
                call.cancel()
            # No answer is not "the lease is gone": a member dying mid-stream ends it so.
            raise MemberFault(Fault.UNREACHABLE, "the keepalive stream closed unanswered")

        return await self._call("lease keepalive", op)

    async def revoke(self, lease: int) -> None:
        """End ``lease`` now: the keys attached to it are deleted."""

        async def op(m: _Member) -> None:
            try:
                await m.lease.LeaseRevoke(
                    rpc.LeaseRevokeRequest(ID=lease), timeout=self.timeout, metadata=REQUIRE_LEADER
                )
            except grpc.aio.AioRpcError as exc:
                if exc.code() is not grpc.StatusCode.NOT_FOUND:  # already gone: fine
                    raise

        await self._call("lease revoke", op)

    async def watch(self, key: str, start_revision: int) -> AsyncIterator[WatchEvent]:
        """Changes of ``key`` from ``start_revision`` on, on the current member, until the
        stream ends: then EtcdUnavailable (cancelled by etcd, compacted history, lost member,
        no leader). The caller re-reads and watches again; the next try starts elsewhere."""
        member = self._members[self._current].open()
        create = rpc.WatchRequest(
            create_request=rpc.WatchCreateRequest(key=key.encode(), start_revision=start_revision)
        )
        ended = asyncio.Event()
        call = member.watch.Watch(_hold_open(create, ended), metadata=REQUIRE_LEADER)
        try:
            async for response in call:
                if response.compact_revision:
                    raise EtcdError(
                        f"etcd watch on {member.target}: history compacted at "
                        f"{response.compact_revision}: re-reading",
                        Fault.COMPACTED.value,
                    )
                if response.canceled:
                    reason = response.cancel_reason or "cancelled by etcd"
                    fault = classify("CANCELLED", reason)
                    self.faults[fault.value] += 1
                    self._next_member(member)
                    raise EtcdUnavailable(f"etcd watch on {member.target} ended: {reason}", fault)
                for event in response.events:
                    kind = "delete" if event.type == rpc.Event.DELETE else "put"
                    yield WatchEvent(kind, _entry(event.kv))
        except grpc.aio.AioRpcError as exc:
            self._next_member(member)
            fault = classify(exc.code().name, exc.details() or "")
            self.faults[fault.value] += 1
            raise EtcdUnavailable(f"etcd watch on {member.target}: {_say(exc)}", fault) from None
        finally:
            ended.set()  # lets grpc's task feeding the requests finish, not linger
            call.cancel()
        self._next_member(member)
        self.faults[Fault.UNREACHABLE.value] += 1
        raise EtcdUnavailable(f"etcd watch on {member.target}: the stream closed")

    def _next_member(self, failed: _Member) -> None:
        if self._members[self._current] is failed:
            self._current = (self._current + 1) % len(self._members)

    async def close(self) -> None:
        for member in self._members:
            await member.close()


async def _hold_open(first: Any, ended: asyncio.Event) -> AsyncIterator[Any]:
    """The watch's request stream: one create request, then open until ``ended``."""
    yield first
    await ended.wait()


def _compare(c: Compare) -> Any:
    message = rpc.Compare(key=c.key.encode(), result=rpc.Compare.EQUAL)
    if c.target == "mod":
        message.target, message.mod_revision = rpc.Compare.MOD, int(c.value)
    elif c.target == "create":
        message.target, message.create_revision = rpc.Compare.CREATE, int(c.value)
    elif c.target == "value" and isinstance(c.value, bytes):
        message.target, message.value = rpc.Compare.VALUE, c.value
    else:
        raise ValueError(f"cannot compare {c.target} with {c.value!r}")
    return message


def _entry(kv: Any) -> Entry:
    return Entry(
        kv.key.decode(), bytes(kv.value), int(kv.mod_revision), int(kv.create_revision), kv.lease
    )


def _prefix_end(prefix: bytes) -> bytes:
    """The first key after every key that starts with ``prefix``."""
    end = bytearray(prefix)
    while end and end[-1] == 0xFF:
        end.pop()
    if not end:
        return b"\0"
    end[-1] += 1
    return bytes(end)


def _say(exc: grpc.aio.AioRpcError) -> str:
    return f"{exc.code().name} {exc.details() or ''}".strip()
