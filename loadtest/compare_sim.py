"""Simulation bench of the comparison guard: false alarms, power and time to detection.

    python -m loadtest.compare_sim [--stages 1000] [--rate 100] [--share 10]
                                   [--stage-minutes 60] [--look-seconds 10] [--alpha 1]

Each scenario simulates ``--stages`` stages of v1 and v2 traffic and runs four guard methods
on the same draws (see loadtest/compare/simulate.py): the shipped sequential comparison,
the same statistic's fixed-horizon test repeated every look (peeking), that test once at
the end of the stage, and today's threshold guard on v2 alone. A/A scenarios (and v2 exactly
at the margin) report false alarms per stage; A/B scenarios report power (detected within
the stage) and the median, 90th percentile and largest time to detection (TTD, from the
start of the stage). Prints a Markdown table and, with --json, JSON.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from loadtest.compare.paired_sim import (
    PAIRED_METHODS,
    PairedScenario,
    Probing,
    draw,
    fail_rounds,
)
from loadtest.compare.simulate import METHODS, Scenario, Traffic, run

SCENARIOS = (
    Scenario("latency A/A", "latency", margin=0.0, v2=1.0),
    Scenario("latency A/A, slow hour for both (p95 844 ms)", "latency", 0.0, 1.0, common=1.9),
    Scenario("latency v2 = 1.05 x v1 (at the margin)", "latency", margin=0.05, v2=1.05),
    Scenario("latency p95 +10%", "latency", margin=0.05, v2=1.10),
    Scenario("latency p95 +20%", "latency", margin=0.05, v2=1.20),
    Scenario("errors A/A 0.5%", "errors", margin=0.0, v2=0.005, v1=0.005),
    Scenario("errors 0.5% -> 1%", "errors", margin=0.20, v2=0.010, v1=0.005),
    Scenario("MOS A/A", "mos", margin=0.0, v2=0.0),
    Scenario("MOS -0.2", "mos", margin=0.05, v2=-0.2),
)

#: --paired: the probes' paired MOS differences (docs/comparison-guards.md, audio figures)
PAIRED_SCENARIOS = (
    PairedScenario("MOS A/A (paired)", drop=0.0, margin=0.0),
    PairedScenario("MOS A/A, margin 0.2 (paired)", drop=0.0, margin=0.2),
    PairedScenario("MOS -0.2 = the margin (paired)", drop=0.2, margin=0.2),
    PairedScenario("MOS -0.2 (paired)", drop=0.2, margin=0.05),
    PairedScenario("MOS -0.2 (paired)", drop=0.2, margin=0.1),
    PairedScenario("MOS -0.4 (paired)", drop=0.4, margin=0.2),
    PairedScenario("MOS -0.6 (paired)", drop=0.6, margin=0.2),
)


def paired_rows(args: argparse.Namespace, alpha: float) -> list[dict[str, object]]:
    """The paired scenarios: rounds every --probe-interval s over --stage-minutes."""
    probing = Probing(
        interval=args.probe_interval,
        stage_seconds=args.stage_minutes * 60.0,
        noise=args.noise,
        min_samples=args.min_pairs,
    )
    rows: list[dict[str, object]] = []
    for index, scenario in enumerate(PAIRED_SCENARIOS):
        if args.only and args.only not in scenario.name:
            continue
        diffs = draw(scenario, probing, args.stages, args.seed + 100 + index)
        fails = fail_rounds(diffs, scenario, probing, alpha)
        for method in PAIRED_METHODS:
            detected = fails[method] >= 0
            seconds = (fails[method][detected] + 1) * probing.interval
            null = scenario.drop <= scenario.margin
            rows.append(
                {"scenario": scenario.name, "metric": "mos", "margin": scenario.margin,
                 "method": method, "rate": float(detected.mean()),
                 "kind": "false alarms" if null else "power",
                 "median_s": float(np.median(seconds)) if seconds.size else None,
                 "p90_s": float(np.percentile(seconds, 90)) if seconds.size else None,
                 "max_s": float(seconds.max()) if seconds.size else None}
            )  # fmt: skip
    return rows


def summarize(scenario: Scenario, traffic: Traffic, fail_look: np.ndarray) -> dict[str, object]:
    detected = fail_look >= 0
    seconds = (fail_look[detected] + 1) * traffic.look_seconds
    aa = scenario.v2 == (1.0 if scenario.metric == "latency" else scenario.v1)
    return {
        "rate": float(detected.mean()),
        "kind": "false alarms" if aa or "margin" in scenario.name else "power",
        "median_s": float(np.median(seconds)) if seconds.size else None,
        "p90_s": float(np.percentile(seconds, 90)) if seconds.size else None,
        "max_s": float(seconds.max()) if seconds.size else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stages", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=100.0, help="requests/s, both cohorts")
    parser.add_argument("--share", type=float, default=10.0, help="v2 share, percent")
    parser.add_argument("--stage-minutes", type=float, default=60.0)
    parser.add_argument("--look-seconds", type=float, default=10.0)
    parser.add_argument("--alpha", type=float, default=1.0, help="percent")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--only", default="", help="run scenarios whose name contains this")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--paired", action="store_true", help="the probes' paired MOS test instead")
    parser.add_argument("--probe-interval", type=float, default=10.0, help="seconds (--paired)")
    parser.add_argument("--noise", type=float, default=0.25, help="MOS sd per answer (--paired)")
    parser.add_argument("--min-pairs", type=int, default=18, help="min_samples (--paired)")
    args = parser.parse_args()
    traffic = Traffic(
        rate=args.rate,
        share=args.share / 100.0,
        stage_seconds=args.stage_minutes * 60.0,
        look_seconds=args.look_seconds,
    )
    alpha = args.alpha / 100.0
    began = time.perf_counter()
    rows = paired_rows(args, alpha) if args.paired else []
    for index, scenario in enumerate(() if args.paired else SCENARIOS):
        if args.only and args.only not in scenario.name:
            continue
        outcome = run(scenario, traffic, alpha, args.stages, args.seed + index)
        for method in METHODS:
            rows.append(
                {"scenario": scenario.name, "metric": scenario.metric,
                 "margin": scenario.margin, "method": method,
                 **summarize(scenario, traffic, outcome.fail_look[method])}
            )  # fmt: skip
    elapsed = time.perf_counter() - began
    if args.json:
        print(json.dumps({"args": vars(args), "elapsed_s": elapsed, "rows": rows}))
        return
    if args.paired:
        print(
            f"{args.stages} stages of {args.stage_minutes:g} min, a probe round every "
            f"{args.probe_interval:g} s (a look after each), MOS noise sd {args.noise:g} per "
            f"answer, min {args.min_pairs} pairs, alpha {args.alpha:g}%; {elapsed:.1f} s"
        )
    else:
        print(
            f"{args.stages} stages of {args.stage_minutes:g} min, a look every "
            f"{args.look_seconds:g} s, {args.rate:g} req/s, v2 share {args.share:g}%, "
            f"alpha {args.alpha:g}%, MOS scored on {traffic.mos_sampled:.0%} of requests; "
            f"{elapsed:.1f} s"
        )
    print()
    print("| scenario | margin | method | false alarms / power | median TTD | p90 TTD | max TTD |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        margin = row["margin"]
        margin_text = f"{margin:g} pt" if row["metric"] == "mos" else f"{margin:.0%}"
        print(
            f"| {row['scenario']} | {margin_text} | {row['method']} | "
            f"{row['kind']} {row['rate']:.1%} | {_seconds(row['median_s'])} | "
            f"{_seconds(row['p90_s'])} | {_seconds(row['max_s'])} |"
        )


def _seconds(value: object) -> str:
    return "-" if value is None else f"{value:.0f} s"


if __name__ == "__main__":
    main()
