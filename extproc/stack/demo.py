"""Demo traffic through a running stack: many synthetic users, then a table of what happened.

Users get a region and a device; most send ``x-user-id``, some only ``x-device-id`` (the
fallback key) and a few neither (the missing-key policy). The named testers and protected
users of examples/rules.yaml are among them. Every user sends several requests, spread over
several threads and keep-alive connections, in shuffled order.

The table shows requests per upstream (from the ``x-tts-model-version`` response header),
the observed v2 share, stickiness (users that saw more than one upstream: must be 0) and
decisions per rule and reason from Envoy's JSON access log (the sidecar's dynamic metadata).
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TextIO

from extproc.stack.client import close_connections, send
from extproc.stack.stack import Stack

REGIONS = ["us-east", "us-west", "eu-west", "eu-central", "ap-south"]
DEVICES = ["ios-17.5", "ios-18.1", "android-14", "android-15", "web-chrome"]
NAMED_USERS = ["qa-001", "qa-002", "vip-42"]
THREADS = 16
MAX_SECONDS = 120.0
ACCESS_LOG_WAIT_SECONDS = 10.0


@dataclass(frozen=True)
class DemoUser:
    """One synthetic user: ``name`` is the demo's own handle, ``headers`` what it sends."""

    name: str
    headers: dict[str, str]


@dataclass
class DemoResult:
    """What the demo observed."""

    sent: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    per_upstream: Counter[str] = field(default_factory=Counter)
    seen_by_user: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    decisions: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    logged: int = 0
    seconds: float = 0.0

    @property
    def v2_share(self) -> float:
        total = sum(self.per_upstream.values())
        return 100.0 * self.per_upstream["v2"] / total if total else 0.0

    @property
    def users_on_several_upstreams(self) -> int:
        return sum(1 for versions in self.seen_by_user.values() if len(versions) > 1)


def synthetic_users(count: int, seed: int = 7) -> list[DemoUser]:
    """``count`` users (at least the named ones), deterministic for a given seed."""
    rng = random.Random(seed)
    users = []
    for index in range(max(count, len(NAMED_USERS))):
        attributes = {"x-region": rng.choice(REGIONS), "x-device-model": rng.choice(DEVICES)}
        name = NAMED_USERS[index] if index < len(NAMED_USERS) else f"user-{index:05d}"
        roll = rng.random()
        if index < len(NAMED_USERS) or roll >= 0.06:
            users.append(DemoUser(name, {"x-user-id": name, **attributes}))
        elif roll >= 0.01:
            device_id = f"device-{index:05d}"
            users.append(DemoUser(device_id, {"x-device-id": device_id, **attributes}))
        else:
            users.append(DemoUser(f"anonymous-{index:05d}", attributes))
    return users


def _schedule(users: list[DemoUser], requests: int, seed: int) -> list[DemoUser]:
    """``requests`` sends, round-robin over users (so each sends several), then shuffled."""
    plan = [users[i % len(users)] for i in range(requests)]
    random.Random(seed).shuffle(plan)
    return plan


def run_demo(stack: Stack, users: int, requests: int, seed: int = 7) -> DemoResult:
    """Send ``requests`` requests from ``users`` users through ``stack``; bounded in time."""
    plan = _schedule(synthetic_users(users, seed), requests, seed)
    result = DemoResult()
    lock = threading.Lock()
    work: Iterator[DemoUser] = iter(plan)
    deadline = time.monotonic() + MAX_SECONDS
    log_offset = stack.access_log_size()
    started = time.monotonic()

    def worker() -> None:
        try:
            while time.monotonic() < deadline:
                with lock:
                    user = next(work, None)
                if user is None:
                    return
                try:
                    reply = send(stack, user.headers, body=f'{{"text": "hi {user.name}"}}'.encode())
                except OSError as exc:
                    outcome, version = type(exc).__name__, None
                else:
                    outcome = "ok" if reply.status == 200 else f"HTTP {reply.status}"
                    version = reply.version
                with lock:
                    result.sent += 1
                    if outcome != "ok":
                        result.errors[outcome] += 1
                    if version:
                        result.per_upstream[version] += 1
                        result.seen_by_user[user.name].add(version)
        finally:
            close_connections()

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        for future in [pool.submit(worker) for _ in range(THREADS)]:
            future.result()
    result.seconds = time.monotonic() - started
    try:
        entries = stack.wait_access_log(result.sent, log_offset, ACCESS_LOG_WAIT_SECONDS)
    except RuntimeError:
        entries = stack.access_log(log_offset)
    result.logged = len(entries)
    for entry in entries:
        key = (
            str(entry.get("rule") or "-"),
            str(entry.get("reason") or "-"),
            str(entry.get("cohort") or "-"),
        )
        result.decisions[key] += 1
    return result


def print_report(result: DemoResult, users: int, out: TextIO) -> None:
    """The demo's table."""
    rate = result.sent / result.seconds if result.seconds else 0.0
    print(
        f"\nDemo: {result.sent} requests from {users} users"
        f" in {result.seconds:.1f} s ({rate:.0f}/s)",
        file=out,
    )
    print(f"\n{'upstream':<12}{'requests':>10}{'share':>10}", file=out)
    total = sum(result.per_upstream.values()) or 1
    for version in sorted(result.per_upstream):
        count = result.per_upstream[version]
        print(f"{version:<12}{count:>10}{100 * count / total:>9.1f}%", file=out)
    errors = sum(result.errors.values())
    detail = f"  ({', '.join(f'{k}: {v}' for k, v in result.errors.items())})" if errors else ""
    print(f"{'errors':<12}{errors:>10}{detail}", file=out)
    print(f"\nobserved v2 share: {result.v2_share:.1f} %", file=out)
    several = result.users_on_several_upstreams
    verdict = "sticky" if several == 0 else "NOT STICKY"
    print(
        f"users that saw more than one upstream: {several}"
        f" of {len(result.seen_by_user)} ({verdict})",
        file=out,
    )
    print(f"\ndecisions from Envoy's access log ({result.logged} entries):", file=out)
    rows = [(*key, str(count)) for key, count in result.decisions.most_common()]
    header = ("rule", "reason", "cohort", "requests")
    widths = [max(len(row[i]) for row in [header, *rows]) + 2 for i in range(4)]
    for row in [header, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row[:3], widths, strict=False)]
        print("".join(cells) + row[3].rjust(widths[3]), file=out)
