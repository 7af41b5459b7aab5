"""Where a sampled request's CPU goes: per process and per thread, at saturation.

    .venv/bin/python -m loadtest.live_split [--setups sidecar,sampled,sampled-nocap]
        [--rounds 3] [--seconds 8] [--warmup 5]

Starts the instant upstream and each setup in turn (pinned like the benchmark; the live setups
wait for the scorer's warm-up), saturates it with wrk for ``--warmup`` then ``--seconds``, and
prints, for the measured window, the CPU microseconds per request of Envoy and of the
sidecar's process group split three ways: the sidecar's main thread (the event loop), its other
threads (the live feed thread and the idle ``/metrics`` server thread: Python 3.11 does not
name OS threads, so they are told apart from the main thread only), and the scoring child;
plus the live counters of the window and the CPU per *sampled* request of the other threads
and of the child. A markdown table, one row per setup and
round; rounds alternate setups, and other programs' CPU is shown (``other``) since a shared
machine disturbs a window.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from loadtest.harness import live, loads, procstat
from loadtest.harness.setups import BenchPorts, Pinning, SystemUnderTest, Upstream
from loadtest.harness.tools import ensure_wrk

#: thread CPU seconds keyed by (process role, thread name)
ThreadCpu = dict[tuple[str, str], float]


def thread_cpu(leader: int) -> ThreadCpu:
    """CPU seconds of every thread of ``leader``'s process group, by (role, thread name):
    role ``main`` for the leader's threads, ``child`` for any other process of the group."""
    out: ThreadCpu = {}
    for pid in procstat.group_pids(leader):
        role = "main" if pid == leader else "child"
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                stat = (task / "stat").read_text()
                name = (task / "comm").read_text().strip()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            seconds = (int(fields[11]) + int(fields[12])) / procstat.CLOCK_TICKS
            key = (role, "(main thread)" if int(task.name) == pid else name)
            out[key] = out.get(key, 0.0) + seconds
    return out


def _delta(before: ThreadCpu, after: ThreadCpu) -> ThreadCpu:
    return {k: v - before.get(k, 0.0) for k, v in after.items()}


def measure(
    sut: SystemUnderTest, wrk: str, args: argparse.Namespace, cpus: frozenset[int] | None
) -> str:
    """One saturation window of ``sut``: the table cells of its row."""
    listener = sut.ports.envoy.listener
    loads.saturate(wrk, listener, connections=64, seconds=args.warmup, cpus=cpus)
    assert sut.processor is not None
    counter = r"^http\.tts_ingress\.downstream_rq_completed$"
    everyone, requests = procstat.cpu_by_pid(), sum(sut.stats(counter).values())
    envoy, sidecar = thread_cpu(sut.envoy.pid), thread_cpu(sut.processor.pid)
    counters = live.scrape(sut.metrics_address) if sut.live else {}
    began = time.monotonic()
    figures, _, _ = loads.saturate(wrk, listener, connections=64, seconds=args.seconds, cpus=cpus)
    wall = time.monotonic() - began
    requests = sum(sut.stats(counter).values()) - requests
    envoy_cpu = sum(_delta(envoy, thread_cpu(sut.envoy.pid)).values())
    threads = _delta(sidecar, thread_cpu(sut.processor.pid))
    window = live.window_figures(counters, live.scrape(sut.metrics_address)) if sut.live else {}
    ours = {os.getpgrp(), sut.envoy.pid, sut.processor.pid}
    other = procstat.other_cpu_seconds(everyone, procstat.cpu_by_pid(), ours) / wall
    main = threads.pop(("main", "(main thread)"), 0.0)
    feed = sum(v for k, v in threads.items() if k[0] == "main")
    child = sum(v for k, v in threads.items() if k[0] == "child")
    sampled = window.get("live_sampled", 0.0)
    per_sample = f"{feed * 1e6 / sampled:.0f} / {child * 1e6 / sampled:.0f}" if sampled else "-"
    us = 1e6 / requests
    skipped, dropped = window.get("live_skipped", 0.0), window.get("live_dropped", 0.0)
    cells = [
        f"{figures['rps']:.0f}", f"{envoy_cpu * us:.1f}", f"{main * us:.1f}", f"{feed * us:.2f}",
        f"{child * us:.2f}", f"{sampled / wall:.1f}",
        f"{skipped / wall:.1f}", f"{dropped / wall:.1f}", per_sample, f"{other:.2f}",
    ]  # fmt: skip
    return " | ".join(cells)


HEADER = (
    "| setup | round | req/s | Envoy µs/req | sidecar main thread µs/req "
    "| sidecar other threads µs/req | scoring child µs/req | sampled/s | skipped/s | dropped/s "
    "| other threads / child µs per sampled request | other programs, cores |"
)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtest.live_split", description=__doc__)
    p.add_argument("--setups", default="sidecar,sampled,sampled-nocap")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=int, default=8)
    p.add_argument("--warmup", type=int, default=5)
    args = p.parse_args(argv)
    if not 1 <= args.rounds <= 10 or not 1 <= args.seconds <= 60 or not 0 <= args.warmup <= 60:
        p.error("--rounds 1..10, --seconds 1..60, --warmup 0..60")
    setups = [s for s in args.setups.split(",") if s]
    wrk, pinning, ports = ensure_wrk(), Pinning.choose(True), BenchPorts.free()
    if pinning.load:
        os.sched_setaffinity(0, pinning.load)
    out = Path(tempfile.mkdtemp(prefix="loadtest-live-split-"))
    print(HEADER)
    print("|" + " --- |" * (HEADER.count("|") - 1))
    with Upstream(ports, out, pinning):
        for index in range(args.rounds):
            for setup in setups:
                with SystemUnderTest(setup, ports, out, pinning) as sut:
                    row = measure(sut, wrk, args, pinning.load)
                print(f"| {setup} | {index + 1} | {row} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
