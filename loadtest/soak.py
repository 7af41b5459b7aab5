"""Soak: the sidecar at a fixed open-loop rate for a long time, its resident memory sampled.

After a warm-up at the same rate, the open-loop client runs for ``seconds`` while the driver
samples the sidecar's RSS (sum over its process group) every ``interval`` seconds. Growth is
(last sample - first sample) / first sample; the issue's bar is <= 10 % over 10 minutes at
1000 requests/s. The warm-up lasts at least one pass over the user population (capped at
MAX_WARMUP_SECONDS), so that anything the sidecar legitimately fills per user or per bucket
(caches, metric children) is full before the first sample and growth means a leak.
Bounded: at most MAX_SOAK_SECONDS, and the client is killed if it overruns.

The summary goes to ``soak.json`` in the out dir and, as a section between markers, into
loadtest/RESULTS.md (the benchmark tables are left as they are).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

from loadtest.harness import loads, measure, population, procstat
from loadtest.harness.measure import LoadResult
from loadtest.harness.setups import BenchPorts, Pinning, ProcessorOptions, SystemUnderTest, Upstream
from loadtest.harness.tools import pinned

MAX_SOAK_SECONDS = 7200
MAX_WARMUP_SECONDS = 120
SECTION_START, SECTION_END = "<!-- soak -->", "<!-- /soak -->"


def _sampling_load(
    sut: SystemUnderTest, port: int, rate: float, seconds: float, interval: float,
    cpus: frozenset[int] | None, samples: list[tuple[float, float]],
) -> LoadResult:  # fmt: skip
    """Run the open-loop client in the background; sample RSS until it ends (bounded)."""
    assert sut.processor is not None
    argv = pinned(loads.open_loop_argv(port, rate, seconds), cpus)
    before = loads.children_cpu()
    start = time.monotonic()
    bound = seconds + loads.OPEN_LOOP_TIMEOUT_SECONDS + loads.MARGIN_SECONDS
    env = loads.processor_env({})
    with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env) as client:
        while True:
            rss = procstat.group_rss_bytes(sut.processor.pid) / 2**20
            samples.append((round(time.monotonic() - start, 1), round(rss, 2)))
            try:
                client.wait(timeout=interval)
                break
            except subprocess.TimeoutExpired:
                if time.monotonic() - start > bound:
                    client.kill()
                    raise loads.LoadError(f"the soak client ran past {bound:.0f}s") from None
        stdout = client.stdout.read() if client.stdout else ""
    if client.returncode != 0:
        raise loads.LoadError(f"the soak client exited {client.returncode}")
    return loads.open_loop_figures(loads.parse_open_loop(stdout), loads.children_cpu() - before)


def run_soak(
    ports: BenchPorts, run_dir: Path, pinning: Pinning, options: ProcessorOptions,
    upstream: Upstream, *, seconds: float, rate: float, interval: float, warmup: float,
) -> dict[str, Any]:  # fmt: skip
    """Soak the sidecar; returns the RSS samples, growth and the window's figures."""
    if not 0 < seconds <= MAX_SOAK_SECONDS:
        raise ValueError(f"--soak must be within 1..{MAX_SOAK_SECONDS} seconds")
    samples: list[tuple[float, float]] = []
    warmup = max(warmup, min(population.USERS / rate, MAX_WARMUP_SECONDS))
    with SystemUnderTest("sidecar", ports, run_dir, pinning, options) as sut:
        assert sut.processor is not None
        cold = procstat.group_rss_bytes(sut.processor.pid) / 2**20
        loads.fixed_rate(ports.envoy.listener, rate, warmup, pinning.load)
        figures = measure.measure(
            sut,
            upstream,
            lambda: _sampling_load(
                sut, ports.envoy.listener, rate, seconds, interval, pinning.load, samples
            ),
        )
    first, last = samples[0][1], samples[-1][1]
    peak = max(mb for _, mb in samples)
    return {
        "rate": rate,
        "seconds": seconds,
        "interval": interval,
        "warmup_seconds": warmup,
        "rss_cold_mb": cold,
        "rss_samples_mb": samples,
        "rss_first_mb": first,
        "rss_last_mb": last,
        "rss_max_mb": peak,
        "growth_pct": (last - first) / first * 100 if first else float("nan"),
        "max_growth_pct": (peak - first) / first * 100 if first else float("nan"),
        "figures": figures,
    }


def markdown(soak: dict[str, Any], command: str, date: str) -> str:
    f = soak["figures"]
    return "\n".join(
        [
            SECTION_START,
            "## Soak (sidecar, open loop)",
            "",
            f"- date: {date}; command: `{command}`",
            f"- {soak['seconds']:.0f} s at {soak['rate']:.0f} req/s after a "
            f"{soak['warmup_seconds']:.0f} s warm-up (RSS {soak['rss_cold_mb']:.1f} MB before "
            f"it); RSS sampled every {soak['interval']:.0f} s: first "
            f"{soak['rss_first_mb']:.1f} MB, last {soak['rss_last_mb']:.1f} MB, "
            f"max {soak['rss_max_mb']:.1f} MB; growth "
            f"{soak['growth_pct']:+.1f} % (max {soak['max_growth_pct']:+.1f} %; bar: <= 10 %)",
            f"- every request answered 200: {'yes' if f.get('all_200') == 1.0 else 'NO'}; "
            f"p50 {f['p50_ms']:.2f} ms, p99 {f['p99_ms']:.2f} ms, p99.9 {f['p999_ms']:.2f} ms; "
            f"sidecar CPU {f['processor_cpu_us_per_req']:.0f} µs/request",
            SECTION_END,
            "",
        ]
    )


def replace_section(document: str, section: str) -> str:
    """``document`` with its soak section replaced by ``section`` (appended if absent)."""
    start, end = document.find(SECTION_START), document.find(SECTION_END)
    if start >= 0 and end > start:
        return document[:start] + section + document[end + len(SECTION_END) :].lstrip("\n")
    return document.rstrip("\n") + "\n\n" + section


def existing_section(document: str) -> str:
    """The soak section of ``document`` and everything after it (sections added by hand or
    by other commands, which a benchmark run keeps), or "" if it has no soak section."""
    start, end = document.find(SECTION_START), document.find(SECTION_END)
    return document[start:].rstrip("\n") + "\n" if start >= 0 and end > start else ""
