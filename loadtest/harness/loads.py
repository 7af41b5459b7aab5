"""The two load generators, each returning (figures, its own CPU seconds, failed requests).

- :func:`saturate`: wrk, closed loop, one thread, a fixed number of keep-alive connections,
  the population of population.py via users.lua. Figures: ``rps`` (completed requests per
  second as wrk counts them) and wrk's own latency percentiles (closed-loop latency at
  saturation: queueing, for information only). wrk counts statuses >= 400 as errors; the
  window's Envoy counters catch any other non-2xx.
- :func:`fixed_rate`: the open-loop client (openloop.py) in a subprocess. Figures: latency
  p50 / p99 / p99.9 / max from each request's intended send time, the achieved rate, and the
  client's own send lag and CPU use (to show that it kept its schedule).

Both are bounded in time: a subprocess timeout of the run's duration plus a margin.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path
from typing import cast

from loadtest.harness import population
from loadtest.harness.measure import LoadResult
from loadtest.harness.openloop import OpenLoopResult
from loadtest.harness.setups import processor_env

__all__ = ["LoadError", "fixed_rate", "open_loop_argv", "processor_env", "saturate"]
from loadtest.harness.tools import pinned

USERS_LUA = Path(__file__).with_name("users.lua")
MARGIN_SECONDS = 30
OPEN_LOOP_TIMEOUT_SECONDS = 5.0


class LoadError(RuntimeError):
    """A load generator failed to run or printed no result."""


def children_cpu() -> float:
    """CPU seconds of this process's waited-for children so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run(argv: list[str], timeout: float, env: dict[str, str] | None = None) -> tuple[str, float]:
    """Run a load generator to completion; its stdout and the CPU seconds it used."""
    before = children_cpu()
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired as exc:
        raise LoadError(f"{argv[0]} ran past its {timeout:.0f}s bound") from exc
    if done.returncode != 0:
        raise LoadError(f"{' '.join(argv)} exited {done.returncode}:\n{done.stderr[-2000:]}")
    return done.stdout, children_cpu() - before


def saturate(
    wrk: str, port: int, *, connections: int, seconds: int, cpus: frozenset[int] | None
) -> LoadResult:
    """wrk at full speed for ``seconds`` (an integer: wrk takes whole seconds)."""
    url = f"http://127.0.0.1:{port}{population.PATH}"
    argv = [wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s"]
    argv += ["-s", str(USERS_LUA), url, "--", *population.wrk_script_args()]
    stdout, cpu = _run(pinned(argv, cpus), seconds + MARGIN_SECONDS)
    lines = [line for line in stdout.splitlines() if line.startswith("WRK_JSON ")]
    if not lines:
        raise LoadError(f"wrk printed no result:\n{stdout[-2000:]}")
    raw = json.loads(lines[-1].removeprefix("WRK_JSON "))
    failed = sum(v for k, v in raw.items() if k.startswith("errors_"))
    figures = {
        "rps": raw["requests"] / (raw["duration_us"] / 1e6),
        "client_requests": raw["requests"],
        "wrk_latency_p50_ms": raw["latency_p50_us"] / 1000,
        "wrk_latency_p99_ms": raw["latency_p99_us"] / 1000,
    }
    return figures, cpu, failed


def open_loop_argv(port: int, rate: float, seconds: float) -> list[str]:
    """The open-loop client's command line (``python -m loadtest.harness.openloop``)."""
    return [
        sys.executable, "-m", "loadtest.harness.openloop", "--port", str(port), "--rate", str(rate),
        "--duration", str(seconds), "--timeout", str(OPEN_LOOP_TIMEOUT_SECONDS),
    ]  # fmt: skip


def parse_open_loop(stdout: str) -> OpenLoopResult:
    """The result line the open-loop client printed."""
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise LoadError(f"the open-loop client printed no result:\n{stdout[-2000:]}")
    return cast(OpenLoopResult, json.loads(lines[-1]))


def open_loop_figures(raw: OpenLoopResult, cpu: float) -> LoadResult:
    """A window's load figures from the client's result and the CPU seconds it used."""
    wall = raw["wall_seconds"]
    latency, service, lag = raw["latency_ms"], raw["service_ms"], raw["send_lag_ms"]
    figures = {
        "achieved_rps": raw["completed"] / wall if wall > 0 else 0.0,
        "client_requests": raw["completed"],
        "p50_ms": latency["p50"],
        "p99_ms": latency["p99"],
        "p999_ms": latency["p999"],
        "max_ms": latency["max"],
        "service_p50_ms": service["p50"],
        "service_p99_ms": service["p99"],
        "send_lag_p99_ms": lag["p99"],
        "send_lag_max_ms": lag["max"],
        "client_cpu_util": raw["client_cpu_seconds"] / wall if wall > 0 else 0.0,
    }
    # every scheduled request that did not get a 200 (other status, error, unanswered)
    return figures, cpu, raw["scheduled"] - raw["status"].get("200", 0)


def fixed_rate(port: int, rate: float, seconds: float, cpus: frozenset[int] | None) -> LoadResult:
    """The open-loop client at ``rate`` requests/s for ``seconds``."""
    timeout = seconds + OPEN_LOOP_TIMEOUT_SECONDS + MARGIN_SECONDS
    argv = pinned(open_loop_argv(port, rate, seconds), cpus)
    stdout, cpu = _run(argv, timeout, processor_env({}))
    return open_loop_figures(parse_open_loop(stdout), cpu)
