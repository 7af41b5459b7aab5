"""The two server models behind one small interface: start on an address, stop with grace.

``h2`` (default): our single-threaded HTTP/2 server on the event loop (see h2/).
``grpc``: grpc.aio, the reference implementation, kept selectable with
``EXTPROC_SERVER=grpc``. Both route the same two methods to the same code.
"""

from __future__ import annotations

from typing import Protocol

import grpc
from google.protobuf.message import DecodeError

from extproc.h2_limits import H2Limits
from extproc.sidecar import wire
from extproc.sidecar.h2.connection import Metadata, RpcError
from extproc.sidecar.h2.server import H2Server
from extproc.sidecar.health import CHECK_PATH, HealthState, UnknownService
from extproc.sidecar.processor import CohortProcessor

EXT_PROC_SERVICE = "envoy.service.ext_proc.v3.ExternalProcessor"
PROCESS_PATH = f"/{EXT_PROC_SERVICE}/Process"
_INVALID_ARGUMENT, _NOT_FOUND = 3, 5
_STATUS = {code.value[0]: code for code in grpc.StatusCode}
#: Characters of a peer-chosen name quoted back in an error (nothing may grow an answer).
_QUOTED = 64


class ServerModel(Protocol):
    async def start(self, address: str, *, reuse_port: bool = False) -> int: ...
    async def stop(self, grace: float) -> None: ...


def _check(health: HealthState, request: bytes) -> bytes:
    try:
        return health.check(request)
    except UnknownService as exc:
        raise RpcError(_NOT_FOUND, f"unknown service {str(exc)[:_QUOTED]}") from None
    except DecodeError:
        raise RpcError(_INVALID_ARGUMENT, "not a HealthCheckRequest") from None


def h2_model(
    processor: CohortProcessor, health: HealthState, tracing: bool, limits: H2Limits | None = None
) -> ServerModel:
    def process(message: bytes, metadata: Metadata) -> bytes | None:
        try:
            return processor.handle(message, metadata if tracing else None)
        except wire.BadMessage as exc:
            raise RpcError(
                _INVALID_ARGUMENT, f"not a ProcessingRequest: {str(exc)[:_QUOTED]}"
            ) from None

    def check(message: bytes, metadata: Metadata) -> bytes:
        return _check(health, message)

    # Only the trace context is read from the metadata, and only with tracing on.
    wanted = frozenset({"traceparent"}) if tracing else frozenset()
    return _H2Model(H2Server({PROCESS_PATH: process, CHECK_PATH: check}, limits, wanted))


class _H2Model:
    def __init__(self, server: H2Server) -> None:
        self.server = server

    async def start(self, address: str, *, reuse_port: bool = False) -> int:
        try:
            return await self.server.start(address, reuse_port=reuse_port)
        except (OSError, ValueError) as exc:
            raise OSError(f"cannot listen on {address}: {exc}") from None

    async def stop(self, grace: float) -> None:
        await self.server.stop(grace)


class GrpcModel:
    """grpc.aio with generic handlers; messages stay raw bytes as in the h2 model."""

    def __init__(self, processor: CohortProcessor, health: HealthState) -> None:
        self._health = health
        self._processor = processor
        self.server: grpc.aio.Server | None = None

    def _build(self, reuse_port: bool) -> grpc.aio.Server:
        # grpc sets SO_REUSEPORT by default; only the workers of --workers N share a port.
        server = grpc.aio.server(options=[("grpc.so_reuseport", int(reuse_port))])
        process = grpc.stream_stream_rpc_method_handler(self._processor.process)
        check = grpc.unary_unary_rpc_method_handler(self._check)
        server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(EXT_PROC_SERVICE, {"Process": process}),
                grpc.method_handlers_generic_handler("grpc.health.v1.Health", {"Check": check}),
            )
        )
        return server

    async def _check(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        try:
            return _check(self._health, request)
        except RpcError as exc:
            await context.abort(_STATUS[exc.status], exc.message)
            raise  # unreachable: abort raises

    async def start(self, address: str, *, reuse_port: bool = False) -> int:
        self.server = self._build(reuse_port)
        try:
            port = self.server.add_insecure_port(address)
        except RuntimeError as exc:  # grpc reports a failed bind this way
            raise OSError(f"cannot listen on {address}: {exc}") from None
        await self.server.start()
        return port

    async def stop(self, grace: float) -> None:
        if self.server is not None:
            await self.server.stop(grace)
