"""Resource guards through the real stack: a stand-in DCGM / cAdvisor exporter -> a real
Prometheus (1 s scrapes) -> the controller running examples/policy-resources.yaml -> the
state file -> the sidecar -> Envoy's routing. GPU memory of v2 climbs past 90 % of its
framebuffer: the rollout rolls back until every request reaches v1.

The controller runs in-process (a thread with its own event loop) on the real clock,
checking every 0.25 s, with the example policy file itself. Background load is open-loop and
bounded (tests/support/background_load.py) over a population half v2 at the initial 10 %.
The test prints the time from the breach (the exporter serving a v2 value above the
threshold) to the controller's rollback and to the last v2 response through Envoy.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from extproc.rollout.clock import SystemClock
from extproc.rollout.controller import Controller
from extproc.rollout.guards.signals import PrometheusSource
from extproc.rollout.policy import load_policy
from extproc.rollout.stores.state_store import FileStateStore
from extproc.stack import client
from extproc.stack.processes import wait_until
from extproc.stack.stack import DEFAULT_RULES, REPO_ROOT, Stack
from tests.support.background_load import BackgroundLoad
from tests.support.cohorts import interleave, users_by_cohort
from tests.support.controller_thread import run_controller_thread
from tests.support.prometheus import exporter_job, running_prometheus
from tests.support.resource_exporter import ResourceExporter

pytestmark = pytest.mark.envoy

POLICY = load_policy(REPO_ROOT / "examples" / "policy-resources.yaml")
CHECK_INTERVAL = 0.25
ROLLBACK_CRITERION = 30.0  # seconds from the breach to the last v2 response (the promise)
V2_USERS, V1_USERS = users_by_cohort(DEFAULT_RULES, POLICY.initial_share)
MIXED = interleave(V2_USERS, V1_USERS)
GPU_TOTAL_MIB = 24_000
GPU_THRESHOLD = next(g.threshold for g in POLICY.guards if g.name == "v2-gpu-memory")


@contextlib.contextmanager
def controller_running(prometheus: str, state_path: Path) -> Iterator[Controller]:
    source = PrometheusSource(prometheus, [g.query for g in POLICY.guards])
    controller = Controller(
        POLICY,
        FileStateStore(state_path),
        {"promql": source},
        clock=SystemClock(),
        interval=CHECK_INTERVAL,
    )
    with run_controller_thread(controller):
        yield controller


def status(controller: Controller) -> dict[str, object]:
    return controller.status(transitions=1)


def test_v2_gpu_memory_climbing_past_the_threshold_rolls_back_to_v1(
    make_stack: Callable[..., Stack], tmp_path: Path
) -> None:
    state_path = tmp_path / "rollout" / "state.json"
    state_path.parent.mkdir()
    with contextlib.ExitStack() as exits:
        exporter = exits.enter_context(ResourceExporter())
        # v1 holds 18 GB, so v2 passes the 90 % guard before "4 GB more than v1" would trip.
        exporter.set("v1", gpu_used_mib=18_000)
        exporter.set("v2", gpu_used_mib=16_000)
        prometheus = exits.enter_context(
            running_prometheus(
                tmp_path / "prometheus", [exporter_job("resources", exporter.address)]
            )
        )
        stack = make_stack(sidecar_args=["--state", str(state_path)])
        controller = exits.enter_context(controller_running(prometheus, state_path))
        controller.apply("start", "e2e-test")
        wait_until(
            lambda: client.send(stack, {"x-user-id": V2_USERS[0]}).version == "v2",
            "the sidecar to serve the started rollout",
            5,
            stack.sidecar,
        )
        exits.callback(client.close_connections)
        load = exits.enter_context(BackgroundLoad(stack, MIXED))
        wait_until(lambda: status(controller)["verdict"] == "pass", "every guard to pass", 30)
        assert status(controller)["phase"] == "ramping" and load.count("v2") > 0

        breach_at = None
        used = 16_000
        while breach_at is None:  # +500 MiB every 0.5 s: 16.0 GB -> 22.0 GB (91.7 %)
            used += 500
            exporter.set("v2", gpu_used_mib=used)
            if used / GPU_TOTAL_MIB > GPU_THRESHOLD:
                breach_at = time.monotonic()
            else:
                time.sleep(0.5)
                assert status(controller)["phase"] == "ramping", used
        wait_until(lambda: status(controller)["phase"] == "rolled_back", "the rollback", 30)
        rolled_back_at = time.monotonic()
        wait_until(lambda: load.settled_on("v1", last=40), "the traffic to settle on v1", 10)
        load.stop()
        assert not load.failures, load.failures
        last_v2 = load.last_received("v2")
        assert last_v2 is not None
        print(
            f"\nresource guard (v2 GPU memory {used} of {GPU_TOTAL_MIB} MiB): breach -> "
            f"rolled_back {rolled_back_at - breach_at:.2f}s, breach -> last v2 response "
            f"{last_v2 - breach_at:.2f}s (criterion {ROLLBACK_CRITERION:.0f}s; "
            f"1 s scrapes, {CHECK_INTERVAL} s checks)"
        )
        assert last_v2 - breach_at <= ROLLBACK_CRITERION
        assert {r.status for r in load.replies} == {200}
        users = [*V2_USERS, *V1_USERS, "qa-001", "qa-002"]
        replies = [client.send(stack, {"x-user-id": user}) for user in users]
        assert {(r.status, r.version) for r in replies} == {(200, "v1")}
        last = controller.status(transitions=1)["transitions"][-1]
        assert (last["reason"], last["actor"]) == ("guard breach: v2-gpu-memory", "controller")
        figures = last["guards"]["v2-gpu-memory"]
        assert figures["verdict"] == "fail" and figures["value"] == pytest.approx(used / 24_000)
        assert last["guards"]["v2-gpu-memory-over-v1"]["verdict"] == "pass"
