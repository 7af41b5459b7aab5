"""Lease-based leader election on etcd: one controller replica leads, the others stand by.

Contract of :class:`LeaderElection` (it runs on an :class:`EtcdSession`'s loop):

- Campaign: grant a lease of ``ttl`` seconds and, in one transaction, create ``<prefix>/leader``
  on that lease only if the key is absent. The winner leads; the key's create revision names
  its term (the store's fence compares it). The key's value is JSON (:class:`LeaderRecord`):
  ``{"id": identity, "admin": "host:port" of its admin API or "", "since": unix seconds of
  the election (the leader's wall clock)}``; a plain string (older versions) is read as the
  identity.
- The leader renews the lease every ``ttl / 3`` and checks the key is still its own. It
  steps down AT ONCE when the lease is gone or the key changed, and by the clock when it
  could not renew for as long as the lease might live: ``is_leader()`` is true only while
  ``now < last renewal sent + ttl granted - margin``, so it turns false even if etcd is
  unreachable and nothing answers. After stepping down it campaigns again.
- A standby watches the key and campaigns the moment it is deleted (lease expired: the
  leader died; or revoked: the leader resigned), so it takes over within ``ttl`` of the
  leader's last renewal (etcd checks lease expiry every 500 ms: add up to that).
- ``stop(resign=True)`` ends the campaign and revokes the lease: a standby takes over now.
- A candidate that finds the key held under its own identity (its previous process, or a
  lease it gave up on during an outage) revokes that lease and campaigns again at once, so
  identities must be unique per replica (the default, host:pid, is; in Kubernetes, the pod
  name is).
- ``require_leader()`` raises :class:`NotLeaderError` ("not the leader; leader is X (admin
  ADDR)", with ``leader_admin``), a TransitionError, so the admin API answers
  FAILED_PRECONDITION and says where to go; when nobody is known to lead because etcd
  failed, :class:`LeaderUnknown` instead, whose ``fault`` (``quorum_lost``, ...) and message
  name the etcd outage, so that the admin API answers UNAVAILABLE.
- Every failure of etcd (any class, see etcd_faults.py) or anything unexpected is caught,
  counted in ``faults`` by class and retried with backoff; the campaign never ends on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from extproc.rollout.state import TransitionError
from extproc.rollout.stores.backoff import Backoff
from extproc.rollout.stores.etcd_client import EtcdClient
from extproc.rollout.stores.etcd_faults import UNEXPECTED, fault_of
from extproc.rollout.stores.etcd_session import EtcdSession
from extproc.rollout.stores.etcd_store import FencedOut
from extproc.rollout.stores.etcd_types import Compare, EtcdError, EtcdUnavailable, Put

log = logging.getLogger("extproc.rollout.stores.leader")
DEFAULT_TTL = 10
RETRY_SECONDS = 0.2  # a failed renewal is retried this soon while the lease may still live


class NotLeaderError(TransitionError):
    """A change asked of a controller that is standing by; ``leader_admin`` is the leader's
    admin API address ('' if unknown)."""

    def __init__(self, message: str, leader_admin: str = "") -> None:
        super().__init__(message)
        self.leader_admin = leader_admin


class LeaderUnknown(NotLeaderError):
    """Nobody is known to lead because etcd failed; ``fault`` is the outage's class."""

    def __init__(self, message: str, fault: str) -> None:
        super().__init__(message)
        self.fault = fault


@dataclass(frozen=True, slots=True)
class LeaderRecord:
    """The value of the leader key."""

    id: str
    admin: str = ""
    since: float | None = None  # unix seconds, the leader's wall clock

    def encode(self) -> bytes:
        return json.dumps({"id": self.id, "admin": self.admin, "since": self.since}).encode()

    @classmethod
    def decode(cls, value: bytes) -> LeaderRecord:
        """The record; a value that is not such JSON is taken as a bare identity."""
        text = value.decode(errors="replace")
        try:
            data: Any = json.loads(text)
        except ValueError:
            return cls(text)
        if not isinstance(data, dict) or not isinstance(data.get("id"), str):
            return cls(text)
        since = data.get("since")
        admin = data.get("admin")
        return cls(
            data["id"],
            admin if isinstance(admin, str) else "",
            float(since) if isinstance(since, int | float) else None,
        )


def default_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class LeaderElection:
    def __init__(
        self,
        session: EtcdSession,
        key: str,
        identity: str = "",
        ttl: int = DEFAULT_TTL,
        admin: str = "",
    ) -> None:
        if ttl < 2:
            raise ValueError(f"leader lease TTL {ttl}s: at least 2 seconds")
        self.key = key
        self.identity = identity or default_identity()
        self.admin = admin  # this replica's admin API, for the leader key
        self.ttl = ttl
        self.terms = 0  # how often this candidate has been elected
        self.leader: str | None = None  # the leader's identity as last seen
        self.record: LeaderRecord | None = None  # the leader key's value as last seen
        self.faults: Counter[str] = Counter()  # failures of the campaign, by class
        self.outage: tuple[str, str] | None = None  # (class, diagnosis) of the last failure
        self._session = session
        self._margin = ttl / 10  # clock drift and the time a write needs to land
        self._member_timeout = min(max(ttl / 4, 0.25), 2.0)  # per member, when renewing
        self._lease: int | None = None
        self._stale_lease: int | None = None  # given up on while etcd was unreachable
        self._term: int | None = None  # create revision of our leader key
        self._valid_until = 0.0  # monotonic
        self._task: asyncio.Task[None] | None = None
        self._backoff = Backoff(cap=1.0)
        self._announced: str | None = None  # the leader last logged while standing by

    # ---- what the controller asks (any thread) -----------------------------------------

    def is_leader(self) -> bool:
        return self._term is not None and time.monotonic() < self._valid_until - self._margin

    def require_leader(self) -> None:
        if self.is_leader():
            return
        known = self.leader is not None and self.leader != self.identity
        if not known and self.outage is not None:
            kind, diagnosis = self.outage
            raise LeaderUnknown(f"no controller leads: {diagnosis}", kind)
        admin = self.record.admin if known and self.record is not None else ""
        raise NotLeaderError(f"not the leader; leader is {self.describe_leader()}", admin)

    def describe_leader(self) -> str:
        if self.leader == self.identity:  # our lease ran out of time while renewing it
            return "unknown (this replica is renewing its lease: try again)"
        if self.leader is None:
            return "unknown (an election is under way)"
        record = self.record
        if record is not None and record.id == self.leader and record.admin:
            return f"{self.leader} (admin {record.admin})"
        return self.leader

    def snapshot(self) -> dict[str, Any]:
        """Who leads as this replica sees it (JSON-ready), for ``status``."""
        leads = self.is_leader()
        record = self.record if self.record is not None and self.record.id == self.leader else None
        return {
            "elected": True,
            "replica": self.identity,
            "replica_leads": leads,
            "leader": self.leader if (leads or self.leader != self.identity) else None,
            "leader_admin": record.admin if record is not None else "",
            "leader_since": record.since if record is not None else None,
            "term": self._term if leads else None,
            "faults": dict(self.faults),
            "outage": self.outage[1] if self.outage is not None and not leads else "",
        }

    def fence(self) -> int:
        """The term to write under (the store compares it); FencedOut when not leading."""
        term = self._term
        if term is None or not self.is_leader():
            raise FencedOut(f"not the leader; leader is {self.describe_leader()}")
        return term

    # ---- life cycle --------------------------------------------------------------------

    def start(self) -> None:
        self._session.spawn(self._run())

    def stop(self, resign: bool = True) -> None:
        """Stop campaigning; with ``resign``, revoke the lease so a standby takes over now."""
        with contextlib.suppress(OSError, RuntimeError):
            self._session.call(lambda _: self._shutdown(resign))

    async def _shutdown(self, resign: bool) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        lease = self._lease
        self._step_down("stopping", logging.INFO)
        if resign and lease is not None:
            with contextlib.suppress(EtcdError, EtcdUnavailable):
                await self._session.client.revoke(lease)
                log.info("resigned the leadership of %s", self.key)

    # ---- the campaign (session loop) ---------------------------------------------------

    async def _run(self) -> None:
        self._task = asyncio.current_task()
        client = self._session.client
        while True:
            try:
                await self._campaign(client)
                self._backoff.reset()
            except Exception as exc:  # never ends the campaign: count, back off, go again
                self._failed(exc)
                if self._term is not None:
                    log.warning("stepping down: %s", exc)
                self._step_down(str(exc))
                await asyncio.sleep(self._backoff.delay())

    def _failed(self, exc: Exception) -> None:
        kind = fault_of(exc)
        if kind == UNEXPECTED:
            log.exception("leader election of %s failed unexpectedly; retrying", self.key)
        self.faults[kind] += 1
        self.outage = (kind, getattr(exc, "diagnosis", "") or str(exc))

    async def _campaign(self, client: EtcdClient) -> None:
        if self._stale_lease is not None:
            # A lease we stopped renewing may outlive an outage (etcd extends leases when
            # it elects a new raft leader): end it, or everyone waits for it to expire.
            await client.revoke(self._stale_lease)
            self._stale_lease = None
        sent = time.monotonic()
        lease = await client.grant(self.ttl)
        self._lease = lease
        mine = LeaderRecord(self.identity, self.admin, time.time())
        claim = Put(self.key, mine.encode(), lease)
        result = await client.txn([Compare(self.key, "create", 0)], [claim], [self.key])
        self.outage = None  # etcd answered
        if result.succeeded:
            self._term, self._valid_until = result.revision, sent + self.ttl
            self.leader, self.terms, self._announced = self.identity, self.terms + 1, None
            self.record = mine
            log.info("leading %s as %s (term %d)", self.key, self.identity, result.revision)
            await self._keep(client, lease, result.revision)
            return
        holder = result.reads.get(self.key)
        self.record = LeaderRecord.decode(holder.value) if holder is not None else None
        self.leader = self.record.id if self.record is not None else None
        self._lease = None
        with contextlib.suppress(EtcdError, EtcdUnavailable):
            await client.revoke(lease)  # unused: do not leave it to expire
        if holder is not None and self.leader == self.identity:
            # Our own key from an earlier life (a restarted process, an outage we gave up
            # on): its lease is ours to end, then we campaign again at once.
            log.info("ending the stale leader key of %s (lease %x)", self.identity, holder.lease)
            self.leader = None
            await client.revoke(holder.lease)
            return
        await self._await_vacancy(client, result.revision)

    async def _keep(self, client: EtcdClient, lease: int, term: int) -> None:
        """Renew until the leadership is lost; returns after stepping down."""
        pause = self.ttl / 3
        while True:
            await asyncio.sleep(pause)
            sent = time.monotonic()
            try:  # per member at most a quarter of the lease: time to try the others
                left = await client.keepalive(lease, self._member_timeout)
                entry, _ = await client.get(self.key, self._member_timeout)
            except Exception as exc:  # any failure: retry while the lease may still live
                self._failed(exc)
                if time.monotonic() >= self._valid_until - self._margin:
                    self._step_down(f"could not renew the lease in time ({exc})")
                    self._stale_lease = lease
                    return
                log.warning("lease renewal failed, retrying: %s", exc)
                pause = RETRY_SECONDS
                continue
            self.outage = None
            if left <= 0 or entry is None or entry.create_revision != term:
                self._step_down("the lease expired" if left <= 0 else "the leader key changed")
                return
            self._valid_until, pause = sent + left, self.ttl / 3

    async def _await_vacancy(self, client: EtcdClient, revision: int) -> None:
        """Stand by until the leader key is deleted (or ``ttl`` passed: look again)."""
        if self.leader != self._announced:  # say it once per leader, not once per ttl
            log.info("standing by; leader of %s is %s", self.key, self.describe_leader())
            self._announced = self.leader
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.ttl):
                async for event in client.watch(self.key, revision + 1):
                    if event.kind == "delete":
                        log.info("the leader of %s is gone: campaigning", self.key)
                        self.leader, self.record = None, None
                        return
                    self.record = LeaderRecord.decode(event.entry.value)
                    self.leader = self.record.id

    def _step_down(self, why: str, level: int = logging.WARNING) -> None:
        if self._term is not None:
            log.log(level, "no longer leading %s: %s", self.key, why)
        self._term, self._lease, self._valid_until = None, None, 0.0
        if self.leader == self.identity:
            self.leader, self.record = None, None
