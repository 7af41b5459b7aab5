"""What the chaos run (chaos.py) records and checks: its report, the leadership sampler,
the audit check and what the controllers logged over all their lives."""

from __future__ import annotations

import itertools
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from extproc.gen.tts_canary.admin.v1 import rollout_admin_pb2 as pb
from extproc.gen.tts_canary.admin.v1 import rollout_admin_pb2_grpc as pb_grpc
from tests.fleet.controllers import FleetController


@dataclass
class ChaosReport:
    seconds: float = 0.0
    seed: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    commands: Counter[str] = field(default_factory=Counter)
    traffic: Counter[str] = field(default_factory=Counter)
    cohorts: Counter[str] = field(default_factory=Counter)
    cohort_violations: list[str] = field(default_factory=list)
    leader_samples: int = 0
    leader_overlaps: list[str] = field(default_factory=list)
    audit_entries: int = 0
    audit_problems: list[str] = field(default_factory=list)
    unexpected_exits: list[str] = field(default_factory=list)
    check_failures: Counter[str] = field(default_factory=Counter)
    campaign_faults: Counter[str] = field(default_factory=Counter)
    logged: Counter[str] = field(default_factory=Counter)  # from the controllers' logs

    def problems(self) -> list[str]:
        found = [f"{n} client errors" for n in [self.traffic["client_error"]] if n]
        found += self.cohort_violations[:10] + self.audit_problems[:10]
        found += self.leader_overlaps[:10] + self.unexpected_exits
        if self.logged["traceback"]:
            found.append(f"{self.logged['traceback']} tracebacks in the controllers' logs")
        return found

    def lines(self) -> list[str]:
        return [
            f"chaos run {self.seconds:.0f} s (seed {self.seed}): faults {dict(self.faults)}",
            f"  operator commands: {dict(self.commands)}",
            f"  requests: {dict(self.traffic)} (client errors must be 0)",
            f"  cohorts: {dict(self.cohorts)}; violations {len(self.cohort_violations)}",
            f"  audit: {self.audit_entries} entries, problems {len(self.audit_problems)}",
            f"  leadership: {self.leader_samples} samples, overlaps {len(self.leader_overlaps)}",
            f"  controller logs, all lives: {dict(self.logged) or 'nothing'}",
            f"  last lives' status: check failures (retried) {dict(self.check_failures) or 'none'}"
            f"; campaign faults {dict(self.campaign_faults) or 'none'}",
            f"  unexpected exits: {len(self.unexpected_exits)}",
        ]


def status(admin: str, timeout: float = 1.0) -> pb.StatusResponse | None:
    with grpc.insecure_channel(admin) as channel:
        try:
            return pb_grpc.RolloutAdminStub(channel).Status(pb.StatusRequest(), timeout=timeout)
        except grpc.RpcError:
            return None


class LeaderSampler:
    """Asks both controllers who leads, A, B, A again; all three saying "I lead" (with
    nothing failing in between) is an overlap."""

    def __init__(self, controllers: list[FleetController]) -> None:
        self.controllers = controllers
        self.samples = 0
        self.overlaps: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> LeaderSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        flip = False
        while not self._stop.wait(0.2):
            a, b = self.controllers[::-1] if flip else self.controllers
            flip = not flip
            first, other, again = status(a.admin), status(b.admin), status(a.admin)
            if first is None or other is None or again is None:
                continue
            self.samples += 1
            leads = [s.leadership.replica_leads for s in (first, other, again)]
            if all(leads):
                self.overlaps.append(f"{a.name} and {b.name} both led at {time.time():.3f}")


_LOGGED = {
    "check failed": re.compile(r"check failed \((\w+),"),
    "renewal failed": re.compile(r"lease renewal failed, retrying"),
    "stepped down": re.compile(r"no longer leading"),
    "elected": re.compile(r"leading \S+ as "),
    "traceback": re.compile(r"^Traceback", re.MULTILINE),
}


def count_logged(logs: list[Path]) -> Counter[str]:
    """What the controllers logged over all their lives (their logs are appended to)."""
    found: Counter[str] = Counter()
    for path in logs:
        text = path.read_text(errors="replace") if path.exists() else ""
        for name, pattern in _LOGGED.items():
            for match in pattern.finditer(text):
                found[f"{name} ({match.group(1)})" if pattern.groups else name] += 1
    return found


def check_audit(audit: list[dict[str, object]]) -> list[str]:
    """Gapless revisions, each step once (its stage one past the previous entry's), each
    entry starting from the share the previous one left."""
    problems = []
    revisions = [int(str(e["revision"])) for e in audit]
    if revisions != list(range(1, len(audit) + 1)):
        problems.append(f"audit revisions are not 1..{len(audit)}: {revisions}")
    for before, after in itertools.pairwise(audit):
        if after["from_share"] != before["to_share"]:
            problems.append(f"r{after['revision']} starts at {after['from_share']}")
        step = str(after["reason"]).startswith("step to") or after["reason"] == "ramp complete"
        if step and int(str(after["stage"])) != int(str(before["stage"])) + 1:
            problems.append(f"r{after['revision']}: stage {after['stage']} after {before['stage']}")
    return problems
