"""The sidecar's lifecycle: load rules, serve, watch for reloads, drain on SIGTERM.

``run_server(settings)`` is an async context manager that tests use to run the
real thing in-process; ``serve(settings)`` is what ``extproc serve`` runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import start_http_server

from extproc.addresses import split_host_port
from extproc.settings import ServeSettings
from extproc.sidecar.health import HealthState
from extproc.sidecar.models import EXT_PROC_SERVICE, GrpcModel, ServerModel, h2_model
from extproc.sidecar.observe import DecisionObserver
from extproc.sidecar.processor import CohortProcessor
from extproc.sidecar.snapshot import RulesHolder
from extproc.sidecar.state_source import StateSource, open_state_source
from extproc.sidecar.watch import ChangeDetector
from extproc.telemetry.decision_log import DecisionLog
from extproc.telemetry.metrics import Metrics
from extproc.telemetry.privacy import IdHasher
from extproc.telemetry.tracing import DecisionTracer

if TYPE_CHECKING:
    from extproc.live.feed import LiveFeed

log = logging.getLogger("extproc.server")

__all__ = ["EXT_PROC_SERVICE", "Running", "run_server", "serve"]


@dataclass
class Running:
    """Handles on a running sidecar (for tests and the serve loop)."""

    server: ServerModel
    port: int
    holder: RulesHolder
    metrics: Metrics
    health: HealthState
    metrics_port: int = 0  # the bound /metrics port (0 when metrics are off)


def _apply(running: Running, outcome: str, what: str = "rules") -> None:
    if what == "rules":
        running.metrics.record_reload(outcome)
    else:
        running.metrics.record_state_reload(outcome)
    snapshot = running.holder.current
    if outcome == "loaded" and snapshot is not None:
        running.metrics.record_rules(snapshot.decider.rules, snapshot.loaded_at, snapshot.state)
        running.health.set_all(serving=True)


async def _watch(running: Running, rules: ChangeDetector, poll_seconds: float) -> None:
    holder = running.holder
    while True:
        await asyncio.sleep(poll_seconds)
        if rules.changed():
            _apply(running, (await asyncio.to_thread(holder.reload)).outcome)


async def _follow(running: Running, source: StateSource) -> None:
    await source.follow(running.holder, lambda outcome: _apply(running, outcome, "state"))


def _processor(
    settings: ServeSettings, holder: RulesHolder, observer: DecisionObserver, metrics: Metrics
) -> tuple[CohortProcessor, LiveFeed | None]:
    """The plain processor; with live sampling on, the sampling one and its scoring feed."""
    if not settings.sampling:
        return CohortProcessor(holder, observer), None
    from extproc.live.feed import LiveFeed
    from extproc.live.metrics import LiveMetrics
    from extproc.live.sampler import Sampler
    from extproc.sidecar.sampling import SamplingProcessor

    feed = LiveFeed(
        LiveMetrics(metrics.registry),
        cpu_cores=settings.sample_cpu,
        scorer_name=settings.sample_scorer,
        max_per_second=settings.sample_max_per_second,
    ).start()
    sampler = Sampler(settings.sample_rates)
    log.info(
        "live sampling on: %s, scoring budget %g cores, at most %g samples/s per cohort",
        sampler.rates,
        settings.sample_cpu,
        feed.max_per_second,
    )
    return SamplingProcessor(holder, observer, sampler, feed), feed


@contextlib.asynccontextmanager
async def run_server(settings: ServeSettings) -> AsyncIterator[Running]:
    """Start the sidecar; on exit stop accepting, drain for ``grace_seconds``, stop."""
    metrics = Metrics()
    holder = RulesHolder(Path(settings.rules))
    health = HealthState(("", EXT_PROC_SERVICE))
    tracer = DecisionTracer.from_env()
    observer = DecisionObserver(
        metrics,
        tracer,
        IdHasher.from_env(),
        DecisionLog(settings.decision_log_rate),
        record_decisions=bool(settings.metrics),  # metrics off: nobody can read them
    )
    processor, live = _processor(settings, holder, observer, metrics)
    server: ServerModel = (
        GrpcModel(processor, health)
        if settings.server == "grpc"
        else h2_model(processor, health, tracing=tracer.enabled, limits=settings.h2_limits)
    )
    port = await server.start(settings.listen, reuse_port=settings.reuse_port)
    running = Running(server, port, holder, metrics, health)
    # Baseline before the first load: a change racing with start-up is still seen.
    detector = ChangeDetector(holder.path)
    source = open_state_source(settings.state, settings.poll_seconds)  # file poll or etcd watch
    if source is not None:
        await source.first(holder)  # before the rules: the first snapshot already has the state
        collector = source.collector()
        if collector is not None:
            metrics.registry.register(collector)
    _apply(running, (await asyncio.to_thread(holder.reload)).outcome)
    http = None
    if settings.metrics:
        host, mport = split_host_port(settings.metrics)
        http, _ = start_http_server(mport, host, registry=metrics.registry)
        running.metrics_port = int(http.server_port)
    log.info(
        "serving ext_proc (%s) on %s (port %d), metrics on %s",
        settings.server,
        settings.listen,
        port,
        settings.metrics or "off",
    )
    # Everything allocated so far (modules, rules, protobuf descriptors) lives for the
    # whole process: move it out of the collector's generations so that full
    # collections, which pause the event loop, have far less to walk.
    gc.collect()
    gc.freeze()
    tasks = [asyncio.create_task(_watch(running, detector, settings.poll_seconds))]
    if source is not None:
        tasks.append(asyncio.create_task(_follow(running, source)))
    try:
        yield running
    finally:
        for task in tasks:
            task.cancel()
        if source is not None:
            source.close()
        health.set_all(serving=False)
        await server.stop(settings.grace_seconds)
        if http is not None:
            http.shutdown()
        tracer.shutdown()  # flush queued spans, bounded
        if live is not None:
            live.close()
        log.info("stopped")


async def serve(
    settings: ServeSettings, started: Callable[[Running, asyncio.Event], None] | None = None
) -> int:
    """Run until SIGTERM or SIGINT, then drain and return 0.

    ``started(running, stop)`` is called once serving (a worker of ``--workers N`` reports
    to its supervisor there, and may set ``stop`` itself)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        async with run_server(settings) as running:
            if started is not None:
                started(running, stop)
            await stop.wait()
            log.info("signal received: draining for up to %ss", settings.grace_seconds)
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
    return 0
