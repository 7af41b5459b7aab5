"""Leadership for ``extproc rollout controller`` when the state lives in etcd.

With an etcd store every controller replica campaigns for ``<prefix>/leader``; only the
leader checks guards and ticks, and only the leader's admin API applies changes (a standby
answers status and refuses changes with FAILED_PRECONDITION naming the leader). The state
store fences every write with the leader's term, so a replica that lost the leadership mid-
check cannot write. With a file store (one host) there is no election: CAS alone guards it.

``add_arguments`` adds ``--leader-ttl`` and ``--leader-id``; ``leadership_for`` builds the
election for a store (None for a file store); ``campaigning(controller)`` runs it for a
``with`` block and resigns at the end, so that a standby takes over at once on a clean
shutdown.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING

from extproc.rollout.stores.state_store import StateStore
from extproc.settings import Setting, env

if TYPE_CHECKING:  # the etcd modules are imported only when an etcd store is used
    from extproc.rollout.controller import Controller
    from extproc.rollout.notify.notifier import Notifier
    from extproc.rollout.stores.leader import LeaderElection

LEADER_TTL = Setting(
    "EXTPROC_LEADER_TTL", "10", "leader lease seconds; a standby takes over within it (etcd)"
)
LEADER_ID = Setting(
    "EXTPROC_LEADER_ID", "", "this replica's name in the election ('' = host:pid) (etcd)"
)
LEADER_ADMIN = Setting(
    "EXTPROC_LEADER_ADMIN",
    "",
    "where clients reach this replica's admin API, published in the leader key "
    "('' = --admin; set it when --admin binds 0.0.0.0) (etcd)",
)
SETTINGS = (LEADER_TTL, LEADER_ID, LEADER_ADMIN)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--leader-ttl", default=env(LEADER_TTL), help=LEADER_TTL.help)
    parser.add_argument("--leader-id", default=env(LEADER_ID), help=LEADER_ID.help)
    parser.add_argument("--leader-admin", default=env(LEADER_ADMIN), help=LEADER_ADMIN.help)


def leadership_for(store: StateStore, args: argparse.Namespace) -> LeaderElection | None:
    """The election for an etcd store (not started), None for any other store; the store's
    writes are fenced with it from now on. ValueError for a bad TTL. The leader key carries
    this replica's admin API address, so that a refusal from a standby says where to go."""
    from extproc.rollout.stores.etcd_store import EtcdStateStore

    if not isinstance(store, EtcdStateStore):
        return None
    from extproc.rollout.stores.leader import LeaderElection, default_identity

    try:
        ttl = int(args.leader_ttl)
    except ValueError:
        raise ValueError(
            f"--leader-ttl ({LEADER_TTL.env}): {args.leader_ttl!r} is not whole seconds"
        ) from None
    identity = args.leader_id or default_identity()
    admin = getattr(args, "leader_admin", "") or _dialable(getattr(args, "admin", ""))
    election = LeaderElection(store.session, store.leader_key, identity, ttl, admin)
    store.fence = election.fence
    return election


def identity_of(leadership: LeaderElection | None) -> str:
    """This replica's name: its election identity, else host:pid (for notifications)."""
    if leadership is not None:
        return leadership.identity
    return f"{socket.gethostname()}:{os.getpid()}"


def _dialable(address: str) -> str:
    """``address`` if a client elsewhere could dial it; '' for a wildcard bind (0.0.0.0,
    [::]), which names no host: then only --leader-admin says where this replica is."""
    host = address.rpartition(":")[0].strip("[]")
    return "" if host in ("0.0.0.0", "::", "") else address


@contextlib.contextmanager
def campaigning(controller: Controller, notifier: Notifier | None = None) -> Iterator[None]:
    """Campaign for ``controller``'s leadership (if it has an election) during the block;
    after it, resign and close the controller's etcd store. A no-op for a file store. With
    a ``notifier``, each new term of this replica is announced (a leadership event)."""
    leadership = controller.leadership
    if leadership is None:
        yield
        return
    from extproc.rollout.stores.leader import LeaderElection

    if not isinstance(leadership, LeaderElection):
        raise TypeError(f"cannot campaign with {leadership!r}")
    from extproc.rollout.notify.leadership import LeadershipWatch

    leadership.start()
    try:
        with contextlib.ExitStack() as watch:
            if notifier is not None:
                watch.enter_context(LeadershipWatch(leadership, controller.store.read, notifier))
            yield
    finally:
        leadership.stop(resign=True)
        close = getattr(controller.store, "close", None)
        if close is not None:
            close()  # ends the etcd session's thread cleanly, its watches included
