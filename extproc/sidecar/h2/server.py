"""Listen, accept HTTP/2 connections, enforce timeouts and shut down gracefully."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping

from extproc.h2_limits import H2Limits
from extproc.sidecar.h2.connection import Connection, Method
from extproc.sidecar.h2.guards import ThrottledLog

log = logging.getLogger("extproc.h2")


class H2Server:
    """Serves ``routes`` (``/package.Service/Method`` -> method) on one address."""

    def __init__(
        self,
        routes: Mapping[str, Method],
        limits: H2Limits | None = None,
        metadata: frozenset[str] | None = None,
    ) -> None:
        self.routes = dict(routes)
        self.limits = limits or H2Limits()
        #: The gRPC metadata names the methods read (None: all); others are not decoded.
        self.metadata = metadata
        self.connections: set[Connection] = set()
        self.warnings = ThrottledLog(log, self.limits.warn_every)
        self._server: asyncio.base_events.Server | None = None
        self._timers: asyncio.Task[None] | None = None

    async def start(self, address: str, *, reuse_port: bool = False) -> int:
        """Bind ``host:port``, ``[v6]:port`` or ``unix:PATH``; return the port (0 for unix)."""
        loop = asyncio.get_running_loop()
        backlog = self.limits.backlog
        if address.startswith("unix:"):
            self._server = await loop.create_unix_server(
                self._connection, address[5:], backlog=backlog
            )
            port = 0
        else:
            host, _, text = address.rpartition(":")
            self._server = await loop.create_server(
                self._connection,
                host.strip("[]"),
                int(text),
                reuse_port=reuse_port or None,
                backlog=backlog,
            )
            # asyncio and uvloop set TCP_NODELAY on accepted TCP connections themselves.
            port = int(self._server.sockets[0].getsockname()[1])
        self._timers = asyncio.create_task(self._expire_connections())
        return port

    def _connection(self) -> Connection:
        connection = Connection(
            self.routes, self.connections.discard, self.limits, self.warnings, self.metadata
        )
        if len(self.connections) >= self.limits.max_connections:
            self.warnings.warn(connection.loop.time(), "too many connections", "closed a new one")
            connection.closing = True  # connection_made closes it at once
            return connection
        self.connections.add(connection)
        return connection

    async def _expire_connections(self) -> None:
        """Close connections past their handshake or idle timeout (checked each second)."""
        loop = asyncio.get_running_loop()
        period = min(1.0, self.limits.handshake_timeout / 4)
        while True:
            await asyncio.sleep(period)
            now = loop.time()
            for connection in list(self.connections):
                reason = connection.expired(now)
                if reason:
                    self.warnings.warn(now, reason, "closed a connection")
                    connection.goaway()
                    connection.close()

    def open_streams(self) -> int:
        return sum(len(c.streams) for c in self.connections)

    async def stop(self, grace: float) -> None:
        """Stop accepting, send GOAWAY, let open streams finish for ``grace`` s, close."""
        if self._server is not None:
            self._server.close()
        if self._timers is not None:
            self._timers.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timers
        for connection in list(self.connections):
            connection.goaway()
        deadline = asyncio.get_running_loop().time() + grace
        while self.open_streams() and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)
        for connection in list(self.connections):
            connection.close()
        if self._server is not None:
            await self._server.wait_closed()
