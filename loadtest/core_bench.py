"""Decisions per second of the pure core on one core: 100 rules, 10,000 listed users.

    python -m loadtest.core_bench [--decisions N]

Rules are region, device-glob and header rules (the last one matches nothing common, so
most requests walk all 100 before the default split); users are 100,000 distinct ids over
5 regions x 7 devices, as in the HTTP load test. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import time

from extproc.core.decide import Decider
from extproc.core.loader import parse_rules


def rules_text(rules: int = 100, listed: int = 10_000) -> bytes:
    lines = ["rollout: {name: bench, salt: bench-salt, share: 10%}", "force:"]
    lines.append("  v2: [" + ", ".join(f"qa-{i}" for i in range(listed // 2)) + "]")
    lines.append("  v1: [" + ", ".join(f"vip-{i}" for i in range(listed // 2)) + "]")
    lines.append("rules:")
    for i in range(rules):
        kind = i % 3
        when = (
            f"{{region: [zone-{i}]}}" if kind == 0
            else f"{{device: 'model-{i}-*'}}" if kind == 1
            else f"{{headers: {{x-app-channel: [chan-{i}]}}}}"
        )  # fmt: skip
        lines.append(f"  - {{name: r{i}, when: {when}, share: {i % 50}%}}")
    return ("\n".join(lines) + "\n").encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--decisions", type=int, default=1_000_000)
    args = parser.parse_args()
    os.sched_setaffinity(0, {0})
    rules = parse_rules("bench.yaml", rules_text())
    decider = Decider(rules)
    regions = ["us-east", "us-west", "eu-west", "ap-south", "sa-east"]
    devices = ["ios-17", "ios-16", "android-14", "android-13", "web", "tv", "car"]
    requests = [
        {"x-user-id": f"user-{i}", "x-region": regions[i % 5], "x-device-model": devices[i % 7]}
        for i in range(100_000)
    ]
    n = args.decisions
    started = time.process_time()
    for i in range(n):
        decider.decide(requests[i % 100_000])
    seconds = time.process_time() - started
    print(
        json.dumps(
            {
                "rules": len(rules.rules),
                "listed_users": 10_000,
                "decisions": n,
                "cpu_seconds": round(seconds, 3),
                "decisions_per_second": round(n / seconds),
            }
        )
    )


if __name__ == "__main__":
    main()
