"""Open the state store a store URL names (the etcd client is imported only for etcd)."""

from __future__ import annotations

from extproc.addresses import FileLocation, parse_store_url
from extproc.rollout.stores.state_store import FileStateStore, StateStore


def open_store(spec: str) -> StateStore:
    """The store that ``spec`` names: FileStateStore or EtcdStateStore (ValueError if bad)."""
    location = parse_store_url(spec)
    if isinstance(location, FileLocation):
        return FileStateStore(location.path)
    from extproc.rollout.stores.etcd_store import EtcdStateStore

    return EtcdStateStore(location)
