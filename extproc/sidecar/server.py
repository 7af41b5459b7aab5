"""The sidecar's lifecycle: load rules, serve gRPC, watch for reloads, drain on SIGTERM.

``run_server(settings)`` is an async context manager that tests use to run the
real thing in-process; ``serve(settings)`` is what ``extproc serve`` runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from prometheus_client import start_http_server

from extproc.decision_log import DecisionLog
from extproc.metrics import Metrics
from extproc.privacy import IdHasher
from extproc.settings import ServeSettings, split_host_port
from extproc.sidecar.observe import DecisionObserver
from extproc.sidecar.processor import CohortProcessor
from extproc.sidecar.snapshot import RulesHolder
from extproc.sidecar.watch import ChangeDetector
from extproc.tracing import DecisionTracer

log = logging.getLogger("extproc.server")

EXT_PROC_SERVICE = "envoy.service.ext_proc.v3.ExternalProcessor"
_SERVING = health_pb2.HealthCheckResponse.SERVING


@dataclass
class Running:
    """Handles on a running sidecar (for tests and the serve loop)."""

    server: grpc.aio.Server
    port: int
    holder: RulesHolder
    metrics: Metrics
    health: HealthServicer


def _handler(processor: CohortProcessor) -> grpc.GenericRpcHandler:
    # Responses are pre-serialized bytes (see wire.py), so the serializer is identity.
    method = grpc.stream_stream_rpc_method_handler(
        processor.process,
        request_deserializer=None,  # raw bytes: the handler parses (see processor.py)
        response_serializer=None,
    )
    return grpc.method_handlers_generic_handler(EXT_PROC_SERVICE, {"Process": method})


async def _apply(running: Running, outcome: str) -> None:
    running.metrics.record_reload(outcome)
    snapshot = running.holder.current
    if outcome == "loaded" and snapshot is not None:
        running.metrics.record_rules(snapshot.decider.rules, snapshot.loaded_at)
        for service in ("", EXT_PROC_SERVICE):
            await running.health.set(service, _SERVING)


async def _watch(running: Running, poll_seconds: float) -> None:
    detector = ChangeDetector(running.holder.path)
    while True:
        await asyncio.sleep(poll_seconds)
        if detector.changed():
            result = await asyncio.to_thread(running.holder.reload)
            await _apply(running, result.outcome)


@contextlib.asynccontextmanager
async def run_server(settings: ServeSettings) -> AsyncIterator[Running]:
    """Start the sidecar; on exit stop accepting, drain for ``grace_seconds``, stop."""
    metrics = Metrics()
    holder = RulesHolder(Path(settings.rules))
    health = HealthServicer()
    for service in ("", EXT_PROC_SERVICE):
        await health.set(service, health_pb2.HealthCheckResponse.NOT_SERVING)
    observer = DecisionObserver(
        metrics,
        DecisionTracer.from_env(),
        IdHasher.from_env(),
        DecisionLog(settings.decision_log_rate),
    )
    processor = CohortProcessor(holder, observer)
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    server.add_generic_rpc_handlers((_handler(processor),))
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    try:
        port = server.add_insecure_port(settings.listen)
    except RuntimeError as exc:  # grpc reports a failed bind this way
        raise OSError(f"cannot listen on {settings.listen}: {exc}") from None
    if port == 0:
        raise OSError(f"cannot listen on {settings.listen}")
    running = Running(server, port, holder, metrics, health)
    await _apply(running, (await asyncio.to_thread(holder.reload)).outcome)
    http = None
    if settings.metrics:
        host, mport = split_host_port(settings.metrics)
        http, _ = start_http_server(mport, host, registry=metrics.registry)
    await server.start()
    log.info(
        "serving ext_proc on %s (port %d), metrics on %s",
        settings.listen,
        port,
        settings.metrics or "off",
    )
    watcher = asyncio.create_task(_watch(running, settings.poll_seconds))
    try:
        yield running
    finally:
        watcher.cancel()
        await health.enter_graceful_shutdown()
        await server.stop(settings.grace_seconds)
        if http is not None:
            http.shutdown()
        observer.tracer.shutdown()  # flush queued spans
        log.info("stopped")


async def serve(settings: ServeSettings) -> int:
    """Run until SIGTERM or SIGINT, then drain and return 0."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        async with run_server(settings):
            await stop.wait()
            log.info("signal received: draining for up to %ss", settings.grace_seconds)
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
    return 0
