"""A small HTTP client for talking to the stack through Envoy, with keep-alive connections.

Each thread keeps one ``http.client`` connection per (host, port) and reuses it, as a real
client would. :func:`send` never raises for an HTTP status; it raises only when no answer came
at all. A request that fails on a *reused* connection before any answer (the server closed
the idle connection: the classic keep-alive race) is retried once on a fresh connection;
any other failure is the caller's.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Mapping
from typing import NamedTuple, Protocol

DEFAULT_BODY = b'{"text": "hello from the canary gate"}'
VERSION_HEADER = "x-tts-model-version"

_local = threading.local()


class HasListener(Protocol):
    """Anything that says where Envoy listens (e.g. a Stack)."""

    @property
    def listener_address(self) -> tuple[str, int]: ...


class Reply(NamedTuple):
    """What one request got: status, the model version that answered, the headers."""

    status: int
    version: str | None
    headers: dict[str, str]


class _Pooled(NamedTuple):
    connection: http.client.HTTPConnection
    used: bool


def _connections() -> dict[tuple[str, int], _Pooled]:
    pool: dict[tuple[str, int], _Pooled] | None = getattr(_local, "pool", None)
    if pool is None:
        pool = _local.pool = {}
    return pool


def request(
    address: tuple[str, int],
    headers: Mapping[str, str],
    *,
    body: bytes | None = DEFAULT_BODY,
    path: str = "/tts",
    method: str = "POST",
    timeout: float = 10.0,
) -> tuple[Reply, bytes]:
    """One request on this thread's keep-alive connection to ``address``; reply and body."""
    pool = _connections()
    for attempt in (1, 2):
        pooled = pool.get(address)
        if pooled is None:
            pooled = _Pooled(http.client.HTTPConnection(*address, timeout=timeout), used=False)
        try:
            pooled.connection.request(method, path, body=body, headers=dict(headers))
            response = pooled.connection.getresponse()
            payload = response.read()
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            pooled.connection.close()
            pool.pop(address, None)
            if pooled.used and attempt == 1:
                continue
            raise
        except BaseException:
            pooled.connection.close()
            pool.pop(address, None)
            raise
        if response.will_close:
            pooled.connection.close()
            pool.pop(address, None)
        else:
            pool[address] = _Pooled(pooled.connection, used=True)
        names = {name.lower(): value for name, value in response.getheaders()}
        return Reply(response.status, names.get(VERSION_HEADER), names), payload
    raise AssertionError("unreachable")


def send(
    stack: HasListener,
    headers: Mapping[str, str],
    *,
    body: bytes | None = DEFAULT_BODY,
    path: str = "/tts",
    method: str = "POST",
    timeout: float = 10.0,
) -> Reply:
    """One request through the stack's Envoy listener: (status, upstream version, headers)."""
    reply, _ = request(
        stack.listener_address, headers, body=body, path=path, method=method, timeout=timeout
    )
    return reply


def close_connections() -> None:
    """Close this thread's pooled connections."""
    pool = _connections()
    for pooled in pool.values():
        pooled.connection.close()
    pool.clear()
