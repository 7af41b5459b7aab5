"""The load-test harness: native Envoy routing vs the naive processor vs the sidecar.

    .venv/bin/python -m loadtest.bench [--quick] [--rounds N] [--duration S] [--out DIR]
    .venv/bin/python -m loadtest.bench --soak 600          # sidecar RSS growth at 1000 req/s

One instant upstream (a direct-response Envoy) serves the whole run. Each round starts every
setup in turn (order rotated each round) on the same ports: warm-up at saturation, then one
open-loop window per fixed rate, then a saturation window (wrk). Every window records
counters and CPU of every process (see measure.py); a window disturbed by other programs is
measured again (see rounds.py). Results: ``results.json`` (every raw
figure per round, medians, comparisons, targets) and ``results.md`` in the out dir, and the
same markdown in loadtest/RESULTS.md (not for ``--quick`` runs, nor with ``--no-results-md``).
Exit code: 0 when every request of every window was answered 200, 1 otherwise, 2 on a harness
error (a tool missing, a process that did not start).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import math
import os
import platform
import shlex
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from extproc.stack.processes import NotReadyError, free_port
from extproc.stack.stack import DEFAULT_RULES, find_envoy
from loadtest import soak
from loadtest.harness import document, loads, procstat, report
from loadtest.harness.rounds import Context, log, run_setup
from loadtest.harness.setups import (
    DEFAULT_SETUPS,
    NEEDS_SINK,
    SETUPS,
    BenchPorts,
    OtlpSink,
    Pinning,
    ProcessorOptions,
    Upstream,
)
from loadtest.harness.tools import ToolError, ensure_wrk, tool_version

RESULTS_MD = Path(__file__).with_name("RESULTS.md")
MAX_ROUNDS, MAX_DURATION = 20, 300


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m loadtest.bench", description=__doc__.split("\n\n")[0]
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="1 round, 2 s per window, 1 s warm-up, rate 1000 unless --rates; no RESULTS.md",
    )
    p.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    p.add_argument("--duration", type=int, default=10, help="seconds per window (default 10)")
    p.add_argument("--warmup", type=int, default=2, help="warm-up seconds per setup (default 2)")
    p.add_argument("--rates", help="open-loop rates, comma-separated (default 500,1000,2000)")
    p.add_argument("--connections", type=int, default=64, help="wrk connections (default 64)")
    p.add_argument(
        "--retries", type=int, help="re-measure a disturbed window up to N times (default 2)"
    )
    p.add_argument(
        "--max-other-cpu", type=float, default=0.1,
        help="cores other programs may use before a window counts as disturbed (default 0.1)",
    )  # fmt: skip
    p.add_argument(
        "--max-send-lag", type=float, default=1.0,
        help="open-loop client send lag p99 (ms) above which a window is disturbed (default 1)",
    )  # fmt: skip
    p.add_argument(
        "--setups", default=",".join(DEFAULT_SETUPS),
        help=f"comma-separated, from {','.join(SETUPS)} (default %(default)s)",
    )  # fmt: skip
    p.add_argument("--out", type=Path, help="output directory (default: a new temp dir)")
    p.add_argument("--no-results-md", action="store_true", help="do not write loadtest/RESULTS.md")
    p.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    p.add_argument("--rules", type=Path, default=DEFAULT_RULES, help="sidecar rules file")
    p.add_argument(
        "--sidecar-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra argument for `extproc serve` (repeatable), e.g. --sidecar-arg=--workers=2",
    )
    p.add_argument(
        "--sidecar-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for the sidecar (repeatable)",
    )
    p.add_argument(
        "--soak",
        type=float,
        metavar="SECONDS",
        help="instead of the benchmark: soak the sidecar for SECONDS (<= 7200)",
    )
    p.add_argument("--soak-rate", type=float, default=1000.0, help="soak rate (default 1000)")
    p.add_argument("--soak-interval", type=float, default=5.0, help="RSS sampling seconds (5)")
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.duration, args.warmup = 1, 2, 1
        args.retries = 0 if args.retries is None else args.retries
        args.rates = args.rates or "1000"
        args.no_results_md = True
    args.rates = args.rates or "500,1000,2000"
    args.retries = 2 if args.retries is None else args.retries
    args.rates = [int(r) for r in args.rates.split(",") if r]
    args.setups = [s for s in args.setups.split(",") if s]
    if unknown := set(args.setups) - set(SETUPS):
        p.error(f"--setups: unknown {', '.join(sorted(unknown))}; allowed: {', '.join(SETUPS)}")
    if not 1 <= args.rounds <= MAX_ROUNDS or not 1 <= args.duration <= MAX_DURATION:
        p.error(f"--rounds must be 1..{MAX_ROUNDS} and --duration 1..{MAX_DURATION}")
    if any(not 0 < r <= 20_000 for r in args.rates):
        p.error("--rates must be within 1..20000 req/s")
    bad_env = [e for e in args.sidecar_env if "=" not in e]
    if bad_env:
        p.error(f"--sidecar-env expects NAME=VALUE, got {bad_env[0]!r}")
    return args


def metadata(args: argparse.Namespace, argv: Sequence[str], pinning: Pinning) -> dict[str, Any]:
    envoy = tool_version([find_envoy(), "--version"]).split("version:")[-1].strip()
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": shlex.join([".venv/bin/python", "-m", "loadtest.bench", *argv]),
        "machine": procstat.machine(),
        "python": platform.python_version(),
        "envoy_version": f"Envoy {envoy}",
        "wrk_version": tool_version([ensure_wrk(), "--version"]).split(" [")[0],
        "pinning": pinning.describe(),
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    }


def _finite(value: Any) -> Any:
    """``value`` with every NaN / infinity replaced by None (strict JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def write_outputs(out: Path, name: str, data: dict[str, Any], markdown: str) -> None:
    text = json.dumps(_finite(data), indent=1, allow_nan=False)
    (out / f"{name}.json").write_text(text + "\n")
    (out / f"{name}.md").write_text(markdown)


def benchmark(args: argparse.Namespace, ctx: Context) -> int:
    rounds: list[dict[str, Any]] = []
    for index in range(args.rounds):
        order = args.setups[index % len(args.setups) :] + args.setups[: index % len(args.setups)]
        log(f"round {index + 1}/{args.rounds}: {', '.join(order)}")
        setups, discarded = {}, []
        for setup in order:
            setups[setup], thrown = run_setup(setup, args, ctx)
            discarded += thrown
        rounds.append(
            {"round": index + 1, "order": order, "setups": setups, "discarded": discarded}
        )
    med = report.medians(rounds)
    comp = report.comparison(rounds)
    result = {"meta": ctx.meta, "rounds": rounds, "medians": med, "comparison": comp}
    result["targets"] = report.targets(comp, med)
    markdown = document.render(result)
    write_outputs(ctx.out, "results", result, markdown)
    if not args.no_results_md:
        previous = RESULTS_MD.read_text() if RESULTS_MD.exists() else ""
        RESULTS_MD.write_text(markdown + soak.existing_section(previous))
    print(markdown)
    clean = all(
        rnd["setups"][s].get(f"{w}.all_200") == 1.0
        for rnd in rounds for s in rnd["setups"]
        for w in ["saturation", *(f"rate_{r}" for r in args.rates)]
    )  # fmt: skip
    return 0 if clean else 1


def soak_mode(args: argparse.Namespace, ctx: Context) -> int:
    result = soak.run_soak(
        ctx.ports, ctx.run_dir, ctx.pinning, ctx.options, ctx.upstream,
        seconds=args.soak, rate=args.soak_rate, interval=args.soak_interval,
        warmup=max(args.warmup, 1),
    )  # fmt: skip
    result["meta"] = ctx.meta
    section = soak.markdown(result, ctx.meta["command"], ctx.meta["date"])
    write_outputs(ctx.out, "soak", result, section)
    if not args.no_results_md:
        previous = RESULTS_MD.read_text() if RESULTS_MD.exists() else "# Load-test results\n"
        RESULTS_MD.write_text(soak.replace_section(previous, section))
    print(section)
    return 0 if result["figures"].get("all_200") == 1.0 else 1


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="loadtest-"))
    out.mkdir(parents=True, exist_ok=True)
    pinning = Pinning.choose(not args.no_pin)
    try:
        wrk = ensure_wrk()
        meta = metadata(args, argv, pinning)  # before pinning the driver: nproc sees all CPUs
        if pinning.load:
            os.sched_setaffinity(0, pinning.load)
        env = dict(e.split("=", 1) for e in args.sidecar_env)
        options = ProcessorOptions(args.rules, tuple(args.sidecar_arg), env)
        ports, run_dir = BenchPorts.free(), out / "logs"
        run_dir.mkdir(exist_ok=True)
        log(f"out dir {out}; pinning {pinning.describe()}")
        with contextlib.ExitStack() as stack:
            upstream = stack.enter_context(Upstream(ports, run_dir, pinning))
            if NEEDS_SINK & set(args.setups) and args.soak is None:
                sink = stack.enter_context(OtlpSink(free_port(), run_dir, pinning))
                options = dataclasses.replace(options, otlp_endpoint=sink.endpoint)
            ctx = Context(ports, run_dir, out, pinning, options, upstream, wrk, meta)
            if args.soak is not None:
                return soak_mode(args, ctx)
            return benchmark(args, ctx)
    except (ToolError, NotReadyError, loads.LoadError, ValueError) as exc:
        log(f"error: {exc}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
