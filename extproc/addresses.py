"""Where things are, as settings spell them. Pure parsing; imports nothing of ours.

``split_host_port`` reads host:port. The rollout state lives in a file or an etcd cluster,
named by one setting:

    /var/run/tts/state.json                       the file store (one host; today's default)
    file:///var/run/tts/state.json                the same, as a URL
    etcd://10.0.0.1:2379,10.0.0.2:2379/tts-canary/gpt-sovits-v2
                                                  an etcd cluster (members, failover in
                                                  order) and the key prefix of this rollout

``parse_store_url`` validates and returns a :class:`FileLocation` or an :class:`EtcdTarget`;
``ValueError`` says what is wrong and what is allowed. ``extproc.rollout.stores.opener`` builds
the store.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ETCD_SCHEME = "etcd://"
FILE_SCHEME = "file://"
DEFAULT_ETCD_PORT = 2379
EXAMPLE = "etcd://127.0.0.1:2379,127.0.0.1:22379/tts-canary/gpt-sovits-v2"
_PREFIX = re.compile(r"(/[A-Za-z0-9._-]+)+")


@dataclass(frozen=True, slots=True)
class FileLocation:
    path: Path


@dataclass(frozen=True, slots=True)
class EtcdTarget:
    """Members as ``host:port`` (tried in this order) and the rollout's key prefix
    (``/a/b``: no trailing slash); every key of the rollout lives under it."""

    endpoints: tuple[str, ...]
    prefix: str

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}"

    def url(self) -> str:
        return f"{ETCD_SCHEME}{','.join(self.endpoints)}{self.prefix}"


def parse_store_url(spec: str) -> FileLocation | EtcdTarget:
    """A plain path or ``file:///path`` -> FileLocation; ``etcd://...`` -> EtcdTarget."""
    if spec.startswith(ETCD_SCHEME):
        return _etcd(spec)
    if spec.startswith(FILE_SCHEME):
        path = spec[len(FILE_SCHEME) :]
        if not path.startswith("/"):
            raise ValueError(f"{spec!r}: a file URL needs an absolute path: file:///path")
        return FileLocation(Path(path))
    if "://" in spec:
        scheme = spec.split("://", 1)[0]
        raise ValueError(
            f"{spec!r}: unknown store {scheme!r}; use a file path, file:///path or {EXAMPLE}"
        )
    if not spec:
        raise ValueError("the state store is empty; use a file path or an etcd:// URL")
    return FileLocation(Path(spec))


def _etcd(spec: str) -> EtcdTarget:
    rest = spec[len(ETCD_SCHEME) :]
    hosts, slash, prefix = rest.partition("/")
    prefix = slash + prefix
    if not _PREFIX.fullmatch(prefix):
        raise ValueError(
            f"{spec!r}: needs a key prefix of /-separated names (letters, digits, . _ -) "
            f"after the members, e.g. {EXAMPLE}"
        )
    endpoints = []
    for item in hosts.split(","):
        address = item.strip()
        if address and ":" not in address.strip("[]"):
            address = f"{address}:{DEFAULT_ETCD_PORT}"
        try:
            host, port = split_host_port(address)
        except ValueError:
            raise ValueError(f"{spec!r}: member {item!r} is not host[:port]") from None
        if not host or port == 0:
            raise ValueError(f"{spec!r}: member {item!r} is not host[:port]")
        endpoints.append(address)
    if len(set(endpoints)) != len(endpoints):
        raise ValueError(f"{spec!r}: a member is listed twice")
    return EtcdTarget(tuple(endpoints), prefix)


def split_host_port(address: str) -> tuple[str, int]:
    """'127.0.0.1:9464' or '[::1]:9464' -> (host, port); ValueError otherwise."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{address!r} is not host:port")
    return host.strip("[]") or "127.0.0.1", int(port)
