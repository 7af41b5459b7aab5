"""Users per second of ``extproc diff`` on one core, and the time for 10 million users.

    python -m loadtest.diff_bench [--users N] [--rounds R] [--reference N]

Two rules changes over N synthetic users (the CLI's population: every region and device
glob of the rules, uniform): a wider rule share (one salt, so each key is hashed once) and
a new salt (every key hashed under both salts). Each is run R times; the median counts.
References, measured in the same run on ``--reference`` users: the scalar way,
``Decider.decide`` per user (which hashes with ``xxhash.xxh64_intdigest``), extrapolated to
N; and the buckets alone (no rules, no counting), vectorized and in a Python loop of
``xxh64_intdigest`` calls.
CPU time of this process (pinned to CPU 0), so other load on the machine mostly shows as
wall time. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from dataclasses import replace

import xxhash

from extproc.core.bucket import BUCKETS
from extproc.core.decide import Decider
from extproc.core.loader import load_rules
from extproc.core.model import Rules
from extproc.diff import catalog
from extproc.diff.engine import UP, run_diff
from extproc.diff.population import SyntheticPopulation
from extproc.diff.xxh64 import buckets_block
from extproc.stack.stack import DEFAULT_RULES


def timed_diff(old: Rules, new: Rules, users: int) -> tuple[float, float, int]:
    """(cpu seconds, wall seconds, users moved v1->v2) of one dry run."""
    population = SyntheticPopulation(
        users, catalog.regions([old, new]), catalog.devices([old, new])
    )
    cpu, wall = time.process_time(), time.perf_counter()
    diff = run_diff(old, new, population, lambda key: key, sample=10)
    return time.process_time() - cpu, time.perf_counter() - wall, diff.moved(UP)


def scalar_seconds_per_user(rules: Rules, users: int) -> float:
    """CPU seconds per user of the sidecar's own decider, one user at a time."""
    population = SyntheticPopulation(users, catalog.regions([rules]), catalog.devices([rules]))
    decider = Decider(rules)
    requests = []
    for i in range(users):
        user_id, g = population.user(i)
        headers = population.groups[g].request_headers("x-region", "x-device-model")
        requests.append({**headers, "x-user-id": user_id})
    started = time.process_time()
    for headers in requests:
        decider.decide(headers)
    return (time.process_time() - started) / users


def buckets_only_seconds(rules: Rules, users: int, reference: int) -> tuple[float, float]:
    """CPU seconds to compute the buckets of ``user-0 .. user-(users-1)`` and nothing else:
    vectorized (keys made and hashed in numpy blocks), and as a Python loop of one bytes
    format and one ``xxhash.xxh64_intdigest`` call per user (timed on ``reference`` users,
    extrapolated)."""
    prefix = rules.salt.encode() + b":"
    population = SyntheticPopulation(users, [None], [None])
    started = time.process_time()
    for chunk in population.chunks():
        for block in chunk.blocks:
            buckets_block(prefix, block.keys)
    vectorized = time.process_time() - started
    digest = xxhash.xxh64_intdigest
    started = time.process_time()
    for i in range(reference):
        (digest(prefix + b"user-%d" % i) * BUCKETS) >> 64
    return vectorized, (time.process_time() - started) * users / reference


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=10_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--reference", type=int, default=1_000_000)
    args = parser.parse_args()
    os.sched_setaffinity(0, {0})
    old = load_rules(DEFAULT_RULES)
    wider = replace(old, share=old.share + 500)
    new_salt = replace(old, salt=old.salt + "-b")
    out: dict[str, object] = {"users": args.users, "rounds": args.rounds}
    for name, new in (("same_salt", wider), ("new_salt", new_salt)):
        runs = [timed_diff(old, new, args.users) for _ in range(args.rounds)]
        cpu = statistics.median(r[0] for r in runs)
        wall = statistics.median(r[1] for r in runs)
        out[name] = {
            "cpu_s": round(cpu, 3),
            "wall_s": round(wall, 3),
            "users_per_s": round(args.users / cpu),
            "moved_up": runs[0][2],
        }
    per_user = scalar_seconds_per_user(old, args.reference)
    vectorized, loop = buckets_only_seconds(old, args.users, args.reference)
    out["buckets_only_cpu_s"] = {"numpy": round(vectorized, 3), "xxhash_loop": round(loop, 3)}
    out["scalar_decide_users_per_s"] = round(1 / per_user)
    out["scalar_decide_s_for_users"] = round(per_user * args.users, 1)
    same_salt = out["same_salt"]
    assert isinstance(same_salt, dict)
    out["speedup_same_salt"] = round(per_user * args.users / same_salt["cpu_s"], 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
