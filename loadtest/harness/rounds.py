"""One setup of one round: start it, warm it up, measure every window, stop it.

Windows run in this order: one open-loop window per fixed rate (ascending), then saturation
(last, so that its queues cannot leak into a latency window). A window is *disturbed* when
other programs used more than ``max_other_cpu`` cores during it (measure.py,
``other_cpu_util``) or when the open-loop client itself could not keep its schedule (send lag
p99 above ``max_send_lag`` ms: the machine stalled the load generator, which runs on other
CPUs than the setup). A disturbed window is measured again, up to ``retries`` more times; the
first undisturbed attempt (else the one with the least foreign CPU) is kept and the others
are returned as discarded, with their figures, so nothing is hidden. The choice depends only
on the environment, never on the setup's own figures.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadtest.harness import loads, measure, procstat
from loadtest.harness.setups import BenchPorts, Pinning, ProcessorOptions, SystemUnderTest, Upstream

SETTLE_SECONDS = 0.5

Figures = dict[str, float]


@dataclass(frozen=True)
class Context:
    """What every part of one run shares."""

    ports: BenchPorts
    run_dir: Path
    out: Path
    pinning: Pinning
    options: ProcessorOptions
    upstream: Upstream
    wrk: str
    meta: dict[str, Any]


def log(message: str) -> None:
    print(f"[loadtest {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def summary(w: Figures) -> str:
    """One progress line for a window."""
    ok = "all 200" if w.get("all_200") == 1.0 else f"FAILED {w['client_failed']:.0f}"
    cpu = f"envoy {w['envoy_cpu_us_per_req']:.0f} us/req"
    if "processor_cpu_us_per_req" in w:
        cpu += f", processor {w['processor_cpu_us_per_req']:.0f} us/req"
    other = f"other {w['other_cpu_util']:.2f} cores"
    if "rps" in w:
        return f"{w['rps']:8.0f} req/s  {cpu}  {ok}  {other}"
    p = f"p50 {w['p50_ms']:.2f} p99 {w['p99_ms']:.2f} p99.9 {w['p999_ms']:.2f} ms"
    return f"{p}  {cpu}  {ok}  {other}"


def windows(args: argparse.Namespace, ctx: Context) -> list[tuple[str, Callable[[], Any]]]:
    """(name, load function) of every window, in the order they run."""
    port, cpus = ctx.ports.envoy.listener, ctx.pinning.load
    out: list[tuple[str, Callable[[], measure.LoadResult]]] = [
        (f"rate_{rate}", functools.partial(loads.fixed_rate, port, rate, args.duration, cpus))
        for rate in args.rates
    ]
    saturation = functools.partial(
        loads.saturate, ctx.wrk, port, connections=args.connections, seconds=args.duration,
        cpus=cpus,
    )  # fmt: skip
    out.append(("saturation", saturation))
    return out


def disturbed(window: Figures, args: argparse.Namespace) -> bool:
    """Did the environment disturb this window (see the module docstring)?"""
    lag = window.get("send_lag_p99_ms", 0.0)
    limit_cpu, limit_lag = float(args.max_other_cpu), float(args.max_send_lag)
    return window["other_cpu_util"] > limit_cpu or lag > limit_lag


def measure_window(
    setup: str, name: str, load: Callable[[], measure.LoadResult], sut: SystemUnderTest,
    args: argparse.Namespace, ctx: Context,
) -> tuple[Figures, list[dict[str, Any]]]:  # fmt: skip
    """The least disturbed of at most ``1 + args.retries`` attempts, and the discarded ones."""
    attempts: list[Figures] = []
    for attempt in range(1 + args.retries):
        time.sleep(SETTLE_SECONDS)  # let the previous window's connections close
        window = measure.measure(sut, ctx.upstream, load)
        attempts.append(window)
        log(f"  {setup:8} {name:11} {summary(window)}")
        if not disturbed(window, args):
            break
        if attempt < args.retries:
            log(f"  {setup:8} {name:11} disturbed (others busy or client late): measuring again")
    kept = min(attempts, key=lambda w: (disturbed(w, args), w["other_cpu_util"]))
    kept["attempts"] = len(attempts)
    discarded = [{"setup": setup, "window": name, "figures": w} for w in attempts if w is not kept]
    return kept, discarded


def run_setup(
    setup: str, args: argparse.Namespace, ctx: Context
) -> tuple[Figures, list[dict[str, Any]]]:
    """Flat figures (``<window>.<figure>``, RSS) of one setup, and the discarded attempts."""
    figures: Figures = {}
    discarded: list[dict[str, Any]] = []
    with SystemUnderTest(setup, ctx.ports, ctx.run_dir, ctx.pinning, ctx.options) as sut:
        loads.saturate(
            ctx.wrk, ctx.ports.envoy.listener, connections=args.connections,
            seconds=args.warmup, cpus=ctx.pinning.load,
        )  # fmt: skip
        for name, load in windows(args, ctx):
            kept, thrown = measure_window(setup, name, load, sut, args, ctx)
            figures.update({f"{name}.{key}": value for key, value in kept.items()})
            discarded += thrown
        if sut.processor is not None:
            figures["processor_rss_mb"] = procstat.group_rss_bytes(sut.processor.pid) / 2**20
        figures["envoy_rss_mb"] = procstat.group_rss_bytes(sut.envoy.pid) / 2**20
    return figures, discarded
