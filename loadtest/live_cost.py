"""The live-sampling comparisons of a benchmark run, per round and as medians.

    .venv/bin/python -m loadtest.live_cost OUT_DIR/results.json

Reads what ``python -m loadtest.bench --setups premode,sidecar,sampled,...`` wrote and prints a
markdown table: every ``sampled*`` setup against ``sidecar`` (sampling off) in the same round,
and ``sidecar`` against ``premode`` (the Envoy config before live sampling): saturation ratio,
Envoy and processor CPU per request, p50 / p99 at each fixed rate, and the live counters of
the saturation window (requests asked for their bodies per second, skipped, dropped).
"""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

Figures = Mapping[str, float]
REFERENCE = "sidecar"


def _per_round(
    rounds: Sequence[Mapping[str, Any]],
    setup: str,
    base: str,
    fn: Callable[[Figures, Figures], float],
) -> list[float]:
    out = []
    for rnd in rounds:
        setups = rnd["setups"]
        if setup in setups and base in setups:
            out.append(fn(setups[setup], setups[base]))
    return out


def _row(label: str, values: list[float], digits: int) -> str:
    if not values:
        return f"| {label} | | |"
    cells = ", ".join(f"{v:+.{digits}f}" if digits >= 0 else f"{v:.3f}" for v in values)
    median = statistics.median(values)
    shown = f"{median:+.{digits}f}" if digits >= 0 else f"{median:.3f}"
    return f"| {label} | {cells} | {shown} |"


def _difference(key: str) -> Callable[[Figures, Figures], float]:
    return lambda a, b: a[key] - b[key]


def _saturation_ratio(a: Figures, b: Figures) -> float:
    return a["saturation.rps"] / b["saturation.rps"]


def rows(rounds: Sequence[Mapping[str, Any]], setup: str, base: str) -> list[str]:
    """The comparison rows of ``setup`` against ``base``."""
    keys = {k for r in rounds for k in r["setups"].get(setup, {})}
    rates = sorted({k.split(".")[0] for k in keys if k.startswith("rate_")})
    vs = f"{setup} vs {base}"
    out = [_row(f"{vs}: saturation ratio", _per_round(rounds, setup, base, _saturation_ratio), -1)]
    for who in ("processor", "envoy"):
        diff = _difference(f"saturation.{who}_cpu_us_per_req")
        out.append(
            _row(f"{vs}: {who} CPU per request (µs)", _per_round(rounds, setup, base, diff), 1)
        )
    for rate in rates:
        for p in ("p50", "p99"):
            diff = _difference(f"{rate}.{p}_ms")
            label = f"{vs}: {p} at {rate.removeprefix('rate_')} req/s (ms)"
            out.append(_row(label, _per_round(rounds, setup, base, diff), 2))
    if setup.startswith("sampled"):
        for counter in ("sampled", "skipped", "dropped"):
            key = f"saturation.live_{counter}"
            mine = [r["setups"][setup] for r in rounds if key in r["setups"].get(setup, {})]
            values = [w[key] / w["saturation.wall_s"] for w in mine]
            if values:
                cells = ", ".join(f"{v:.1f}" for v in values)
                label = f"{setup}: {counter} per second at saturation"
                out.append(f"| {label} | {cells} | {statistics.median(values):.1f} |")
    return out


def table(result: Mapping[str, Any]) -> str:
    rounds = result["rounds"]
    present = {s for r in rounds for s in r["setups"]}
    lines = ["| same-run comparison | per round | median |", "| --- | --- | --- |"]
    if {"premode", REFERENCE} <= present:
        lines += rows(rounds, REFERENCE, "premode")
    for setup in sorted(s for s in present if s.startswith("sampled")):
        if REFERENCE in present:
            lines += rows(rounds, setup, REFERENCE)
        if "premode" in present:
            lines += rows(rounds, setup, "premode")[:1]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    print(table(json.loads(Path(args[0]).read_text())), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
