"""A bounded chaos run: a whole fleet under random faults, its invariants checked throughout.

The fleet: a 3-member etcd cluster, 3 gateways (a real Envoy + a sidecar watching etcd +
stand-in models each), 2 controllers (one leads; checks every 0.1 s; a step every 2 s).
Steady traffic from many users runs through all gateways. Every few seconds one fault, then
its repair: SIGKILL and restart of an etcd member (usually the raft leader), of a
controller, of a sidecar, of an Envoy; now and then a lost quorum (two members down for a
few seconds). Operator commands (pause, resume, rollback with a reason, set-share, start)
go to the leader in between, whatever state the fleet is in. Every kind of fault comes once
first (in random order), then they are drawn by weight (FAULTS).

Invariants (see :meth:`ChaosReport.problems`):
- no client error beyond Envoy's fail-open (answers served without the sidecar are counted;
  requests to a gateway whose Envoy the run killed are counted apart);
- no user changes cohort on a gateway except when the state's share changed, and only in
  its direction (chaos_traffic.cohort_violations);
- the audit log is gapless (revisions 1..n), no step applied twice, each entry continues
  the share where the previous one left it;
- at most one controller leads at any time (sampled: A, B, then A again all leading);
- no process exits unless the run killed it.

Run the short version with pytest (tests/fleet/test_chaos.py) or a long one on demand:

    python -m tests.fleet.chaos --minutes 10 [--seed N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import grpc

from extproc.addresses import EtcdTarget
from extproc.gen.tts_canary.admin.v1 import rollout_admin_pb2 as pb
from extproc.gen.tts_canary.admin.v1 import rollout_admin_pb2_grpc as pb_grpc
from extproc.rollout.stores.etcd_store import EtcdStateStore
from extproc.stack.processes import ManagedProcess, wait_for_http, wait_for_port, wait_until
from extproc.stack.stack import DEFAULT_RULES, HOST, Stack
from tests.fleet.chaos_checks import ChaosReport, LeaderSampler, check_audit, count_logged
from tests.fleet.chaos_checks import status as status_of
from tests.fleet.chaos_traffic import Traffic, cohort_violations, share_sequence
from tests.fleet.controllers import FleetController, leader_of, write_policy
from tests.support.etcd_cluster import EtcdCluster

ROLLOUT = "gpt-sovits-v2"  # the rules file's rollout: the sidecars apply its state
# Enough users for a population (~10 % of them on v2 at the first stage), few enough that
# each is heard on each gateway every few seconds: that is what the cohort check can see.
USERS = [f"listener-{i}" for i in range(300)]
CHECK_INTERVAL = 0.1
FAULTS = {  # fault -> weight
    "etcd_member": 4,
    "quorum_loss": 1,
    "controller": 2,
    "sidecar": 2,
    "envoy": 2,
}


class ChaosFleet:
    """The fleet of the module docstring; faults and repairs by name; always stopped."""

    def __init__(self, root: Path, rng: random.Random, report: ChaosReport) -> None:
        self.root, self.rng, self.report = root, rng, report
        self._exit = contextlib.ExitStack()
        self.down: set[ManagedProcess] = set()  # killed on purpose, not restarted yet
        try:
            self._build(root)
        except BaseException:
            self._exit.close()
            raise

    def _build(self, root: Path) -> None:
        self.etcd = self._exit.enter_context(EtcdCluster(root / "etcd"))
        url = self.etcd.url("/chaos")
        policy = write_policy(root / "policy.yaml", ROLLOUT, step_interval="2s")
        self.store = EtcdStateStore(EtcdTarget(tuple(self.etcd.endpoints), "/chaos"))
        self._exit.callback(self.store.close)
        self.controllers = [
            FleetController(name, policy, url, root, interval=CHECK_INTERVAL)
            for name in ("ctrl-a", "ctrl-b")
        ]
        for controller in self.controllers:
            self._exit.callback(controller.stop)
            controller.start()
        self.gateways = [
            self._exit.enter_context(
                Stack.with_free_ports(run_dir=root / f"gw{i}", sidecar_args=["--state", url])
            )
            for i in range(3)
        ]
        wait_until(lambda: leader_of(self.store) is not None, "a controller to lead", 20)
        self.traffic = Traffic(self.gateways, USERS, threads=3, rate=30)

    def close(self) -> None:
        self._exit.close()

    def processes(self) -> list[ManagedProcess]:
        found = list(self.etcd.members) + [c.process for c in self.controllers]
        for gateway in self.gateways:
            found += gateway.processes()
        return found

    def check_alive(self) -> None:
        for process in self.processes():
            if process not in self.down and not process.alive():
                note = f"{process.name} exited by itself (code {process.returncode})"
                if note not in self.report.unexpected_exits:
                    self.report.unexpected_exits.append(note + "\n" + process.log_tail(10))

    def _pause(self, low: float, high: float) -> None:
        time.sleep(self.rng.uniform(low, high))

    def _kill(self, process: ManagedProcess) -> None:
        self.down.add(process)
        process.kill()

    def _started(self, process: ManagedProcess) -> None:
        self.down.discard(process)

    # ---- faults, each repaired before it returns ------------------------------------------

    def etcd_member(self) -> None:
        leader = self.etcd.leader_index()
        index = leader if leader is not None and self.rng.random() < 0.7 else self.rng.randrange(3)
        self.report.faults["etcd_raft_leader" if index == leader else "etcd_member"] += 1
        member = self.etcd.members[index]
        self._kill(member)
        self._pause(0.5, 2.0)
        self.etcd.restart(index)
        self._started(member)
        self.etcd.wait_healthy()

    def quorum_loss(self) -> None:
        self.report.faults["quorum_loss"] += 1
        indexes = self.rng.sample(range(3), 2)
        for index in indexes:
            self._kill(self.etcd.members[index])
        self._pause(2.0, 4.0)
        for index in indexes:
            self.etcd.restart(index)
            self._started(self.etcd.members[index])
        self.etcd.wait_healthy()

    def controller(self) -> None:
        self.report.faults["controller"] += 1
        target = self.rng.choice(self.controllers)
        self._kill(target.process)
        self._pause(0.5, 2.0)
        target.start()
        self._started(target.process)

    def sidecar(self) -> None:
        self.report.faults["sidecar"] += 1
        gateway = self.rng.choice(self.gateways)
        self._kill(gateway.sidecar)
        self._pause(0.5, 2.0)
        gateway.start_sidecar(wait=True)
        self._started(gateway.sidecar)

    def envoy(self) -> None:
        self.report.faults["envoy"] += 1
        index = self.rng.randrange(len(self.gateways))
        gateway = self.gateways[index]
        self.traffic.set_down(index, True)
        self._kill(gateway.envoy)
        self._pause(0.5, 2.0)
        gateway.envoy.start()
        self._started(gateway.envoy)
        wait_for_http(gateway.admin_url + "/ready", 30, gateway.envoy)
        wait_for_port(HOST, gateway.ports.listener, 30, gateway.envoy)
        gateway.wait_sidecar_health_in_envoy(healthy=True)
        self.traffic.set_down(index, False)

    # ---- the operator -----------------------------------------------------------------

    def operator(self) -> None:
        """One command that the current phase allows, sent to whoever leads (if anyone)."""
        try:
            state = self.store.read()
            leader = leader_of(self.store)
        except (OSError, RuntimeError):
            self.report.commands["skipped: etcd unavailable"] += 1
            return
        target = next((c for c in self.controllers if c.name == leader), None)
        if state is None or target is None:
            self.report.commands["skipped: no leader"] += 1
            return
        choices: dict[str, list[tuple[str, dict[str, str]]]] = {
            "pending": [("Start", {})],
            "ramping": [("Pause", {}), ("Rollback", {}), ("SetShare", {"share": "5%"})],
            "paused": [("Resume", {}), ("SetShare", {"share": "5%"})],
            "rolled_back": [("Resume", {})],
            "completed": [("Rollback", {})],
        }
        method, extra = self.rng.choice(choices[state.phase.value])
        fields = {"actor": "chaos@test", "reason": f"chaos {method.lower()}", **extra}
        request = getattr(pb, f"{method}Request")(**fields)
        with grpc.insecure_channel(target.admin) as channel:
            try:
                getattr(pb_grpc.RolloutAdminStub(channel), method)(request, timeout=10)
                outcome = "ok"
            except grpc.RpcError as exc:
                outcome = exc.code().name
        self.report.commands[f"{method}: {outcome}"] += 1


def run_chaos(
    root: Path, seconds: float, seed: int, say: Callable[[str], None] = print
) -> ChaosReport:
    """Build the fleet, inject faults for ``seconds``, check every invariant, tear down."""
    rng = random.Random(seed)
    report = ChaosReport(seed=seed)
    fleet = ChaosFleet(root, rng, report)
    began = time.monotonic()
    try:
        sampler = LeaderSampler(fleet.controllers).start()
        fleet.traffic.start()
        fleet.operator()  # start the rollout
        kinds, weights = list(FAULTS), list(FAULTS.values())
        first = rng.sample(kinds, len(kinds))  # every kind of fault once, then at random
        while time.monotonic() - began < seconds:
            fault = first.pop(0) if first else rng.choices(kinds, weights)[0]
            say(f"[chaos {time.monotonic() - began:5.1f}s] {fault}")
            getattr(fleet, fault)()
            fleet.check_alive()
            fleet._pause(1.0, 3.0)
            if rng.random() < 0.5:
                fleet.operator()
            fleet.check_alive()
        fleet.traffic.stop()
        sampler.stop()
        report.seconds = time.monotonic() - began
        for controller in fleet.controllers:
            status = status_of(controller.admin, timeout=5)
            if status is not None:
                report.check_failures.update(dict(status.check_failures))
                report.campaign_faults.update(dict(status.leadership.faults))
        report.logged = count_logged([c.process.log_path for c in fleet.controllers])
        audit = fleet.store.audit(100_000)
        report.audit_entries = len(audit)
        report.audit_problems = check_audit(audit)
        report.traffic = fleet.traffic.outcomes
        report.cohort_violations, report.cohorts = cohort_violations(
            fleet.traffic.observations, share_sequence(audit, ROLLOUT), DEFAULT_RULES
        )
        report.leader_samples, report.leader_overlaps = sampler.samples, sampler.overlaps
        fleet.check_alive()
    finally:
        fleet.traffic.stop()
        fleet.close()
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fleet.chaos", description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0, help="default %(default)s")
    parser.add_argument("--seed", type=int, default=int(time.time()), help="default: now")
    parser.add_argument("--keep", type=Path, help="run directory to keep (default: a temp dir)")
    args = parser.parse_args(argv)
    with contextlib.ExitStack() as stack:
        root = args.keep or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        root.mkdir(parents=True, exist_ok=True)
        report = run_chaos(root, args.minutes * 60, args.seed)
    print("\n".join(report.lines()))
    problems = report.problems()
    for problem in problems:
        print(f"PROBLEM: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
