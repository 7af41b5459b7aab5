"""One measurement window: snapshot counters and CPU, run a load, snapshot again, derive figures.

A window's figures are a flat ``dict[str, float]`` (plain data, JSON as is):

- ``requests``: requests Envoy completed in the window (``downstream_rq_completed`` delta);
  ``non_2xx``: those it did not answer 2xx; ``client_failed``: requests the load generator
  saw fail (any error, any status other than 200, or never answered); ``all_200`` is 1.0 when
  both are 0 and at least one request was served (the upstream answers nothing but 200).
- ``v2_share``: fraction of upstream requests that went to ``tts_v2`` (about 0.1 in every
  setup; 0 would mean nothing was routed by cohort).
- ``decided``: ext_proc answers received / requests (1.0 when the processor decided every
  request; absent for native), plus the ext_proc failure counters.
- ``*_cpu_us_per_req``: CPU microseconds (user + system) of Envoy, the processor, the
  upstream and the load generator, divided by ``requests``; ``*_cpu_util``: CPU seconds per
  wall second of the same processes (1.0 = one full core), so a reader can see which side
  was saturated. ``other_cpu_util``: CPU used by every other process on the machine (not the
  setup, the upstream, the driver or its load generators): above ~0.1, the window was
  disturbed by something else running. ``sut_cpus_busy``: how busy the CPUs of Envoy and the
  processor were, for any reason (interrupts included; from /proc/stat, tick-sampled, so
  meaningful at saturation): near 1.0 means the setup was CPU-bound.
- ``live_sampled`` / ``live_skipped`` / ``live_scored`` / ``live_dropped`` (live-sampling
  setups only): how much the sidecar's live counters grew in the window (see live.py).
- Load-specific figures, prefixed by the caller's load function (see :mod:`loadtest.harness.loads`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from loadtest.harness import live, procstat
from loadtest.harness.setups import SystemUnderTest, Upstream

COUNTERS = (
    r"^(http\.tts_ingress\.(downstream_rq_(completed|2xx)|ext_proc\.(streams_started|"
    r"stream_msgs_received|failure_mode_allowed|message_timeouts|streams_failed))"
    r"|cluster\.tts_v[12]\.upstream_rq_completed)$"
)
INGRESS = "http.tts_ingress."
EXT_PROC = INGRESS + "ext_proc."

Figures = dict[str, float]
LoadResult = tuple[Figures, float, int]
"""What a load function returns: its own figures, its CPU seconds, its failed requests."""


@dataclass(frozen=True)
class Snapshot:
    """Counters and CPU seconds at one instant (``groups``: the process groups measured)."""

    wall: float
    envoy_cpu: float
    processor_cpu: float
    upstream_cpu: float
    groups: tuple[int, ...]
    everyone: dict[int, procstat.ProcStat]
    jiffies: dict[int, tuple[int, int]]
    counters: dict[str, int]
    live: dict[str, float]


def snapshot(sut: SystemUnderTest, upstream: Upstream) -> Snapshot:
    everyone = procstat.cpu_by_pid()
    processor = sut.processor.pid if sut.processor else None
    return Snapshot(
        wall=time.monotonic(),
        envoy_cpu=procstat.group_cpu_seconds(sut.envoy.pid, everyone),
        processor_cpu=procstat.group_cpu_seconds(processor, everyone) if processor else 0.0,
        upstream_cpu=procstat.group_cpu_seconds(upstream.process.pid, everyone),
        groups=tuple(p.pid for p in (*sut.processes(), upstream.process)),
        everyone=everyone,
        jiffies=procstat.cpu_jiffies(),
        counters=sut.stats(COUNTERS),
        live=live.scrape(sut.metrics_address) if sut.live else {},
    )


def _delta(before: Snapshot, after: Snapshot, name: str) -> int:
    return after.counters.get(name, 0) - before.counters.get(name, 0)


def derive(
    before: Snapshot, after: Snapshot, load: LoadResult, has_processor: bool,
    sut_cpus: frozenset[int] | None,
) -> Figures:  # fmt: skip
    """The window's figures from two snapshots and the load generator's result."""
    load_figures, load_cpu, client_failed = load
    wall = after.wall - before.wall
    requests = _delta(before, after, INGRESS + "downstream_rq_completed")
    non_2xx = requests - _delta(before, after, INGRESS + "downstream_rq_2xx")
    v1 = _delta(before, after, "cluster.tts_v1.upstream_rq_completed")
    v2 = _delta(before, after, "cluster.tts_v2.upstream_rq_completed")
    per_req = 1e6 / requests if requests else float("nan")
    cpu = {
        "envoy": after.envoy_cpu - before.envoy_cpu,
        "upstream": after.upstream_cpu - before.upstream_cpu,
        "loadgen": load_cpu,
    }
    if has_processor:
        cpu["processor"] = after.processor_cpu - before.processor_cpu
    ours = {os.getpgrp(), *before.groups}
    other = procstat.other_cpu_seconds(before.everyone, after.everyone, ours)
    figures: Figures = {
        "wall_s": wall,
        "requests": requests,
        "non_2xx": non_2xx,
        "client_failed": client_failed,
        "all_200": float(requests > 0 and non_2xx == 0 and client_failed == 0),
        "v2_share": v2 / (v1 + v2) if v1 + v2 else 0.0,
        "other_cpu_util": other / wall if wall > 0 else float("nan"),
        "sut_cpus_busy": procstat.busy_fraction(
            before.jiffies, after.jiffies, sut_cpus or before.jiffies.keys()
        ),
    }
    for name, seconds in cpu.items():
        figures[f"{name}_cpu_us_per_req"] = seconds * per_req
        figures[f"{name}_cpu_util"] = seconds / wall if wall > 0 else float("nan")
    if has_processor:
        answered = _delta(before, after, EXT_PROC + "stream_msgs_received")
        figures["decided"] = answered / requests if requests else 0.0
        for name in ("failure_mode_allowed", "message_timeouts", "streams_failed"):
            figures[f"ext_proc_{name}"] = _delta(before, after, EXT_PROC + name)
    figures.update(live.window_figures(before.live, after.live))
    figures.update(load_figures)
    return figures


def measure(sut: SystemUnderTest, upstream: Upstream, load: Callable[[], LoadResult]) -> Figures:
    """Run ``load`` between two snapshots of ``sut`` and return the window's figures."""
    before = snapshot(sut, upstream)
    result = load()
    after = snapshot(sut, upstream)
    return derive(before, after, result, sut.processor is not None, sut.pinning.sut)
