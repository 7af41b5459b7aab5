"""Listen, accept HTTP/2 connections and shut down gracefully."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from extproc.sidecar.h2.connection import Connection, Method


class H2Server:
    """Serves ``routes`` (``/package.Service/Method`` -> method) on one address."""

    def __init__(self, routes: Mapping[str, Method]) -> None:
        self.routes = dict(routes)
        self.connections: set[Connection] = set()
        self._server: asyncio.base_events.Server | None = None

    async def start(self, address: str, *, reuse_port: bool = False) -> int:
        """Bind ``host:port``, ``[v6]:port`` or ``unix:PATH``; return the port (0 for unix)."""
        loop = asyncio.get_running_loop()
        if address.startswith("unix:"):
            self._server = await loop.create_unix_server(self._connection, address[5:])
            return 0
        host, _, port = address.rpartition(":")
        self._server = await loop.create_server(
            self._connection, host.strip("[]"), int(port), reuse_port=reuse_port or None
        )
        # asyncio and uvloop set TCP_NODELAY on accepted TCP connections themselves.
        return int(self._server.sockets[0].getsockname()[1])

    def _connection(self) -> Connection:
        connection = Connection(self.routes, self.connections.discard)
        self.connections.add(connection)
        return connection

    def open_streams(self) -> int:
        return sum(len(c.streams) for c in self.connections)

    async def stop(self, grace: float) -> None:
        """Stop accepting, send GOAWAY, let open streams finish for ``grace`` s, close."""
        if self._server is not None:
            self._server.close()
        for connection in list(self.connections):
            connection.goaway()
        deadline = asyncio.get_running_loop().time() + grace
        while self.open_streams() and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)
        for connection in list(self.connections):
            connection.close()
        if self._server is not None:
            await self._server.wait_closed()
