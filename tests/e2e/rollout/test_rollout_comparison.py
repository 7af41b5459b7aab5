"""Compare guards through the real stack: Envoy's per-cluster latency histograms -> the
controller's sequential comparison -> the state file -> the sidecar -> Envoy's routing.

- v2 made 20 % slower than v1 (312 ms against 260 ms), far under the 800 ms threshold of the
  p95 guard beside it, is rolled back by the comparison guard, with its figures (effect,
  interval, anytime p-value, e-value, samples per cohort) in the audit entry.
- v1 and v2 identical over a whole ramp (10 % -> 100 % on a calendar clock running 1200x, so
  each 2 h step passes in 6 s of real traffic, with a new test every stage) ramp to the end
  with no rollback.

The controller runs in-process (a thread with its own event loop), checking every 0.25 s;
the background load is open-loop and bounded (80 requests/s, at most 48 in flight).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from extproc.rollout.clock import Clock, ScaledClock, SystemClock
from extproc.rollout.controller import Controller
from extproc.rollout.guards.signals import EnvoyStatsSource
from extproc.rollout.policy import Policy, parse_policy
from extproc.rollout.stores.state_store import FileStateStore
from extproc.stack.processes import wait_until
from extproc.stack.stack import Stack
from tests.support.background_load import BackgroundLoad
from tests.support.controller_thread import run_controller_thread

pytestmark = pytest.mark.envoy

CHECK_INTERVAL = 0.25
POLICY = """policy:
  rollout: gpt-sovits-v2
  initial_share: 10%
  step: 10%
  step_interval: {step_interval}
  guards:
    - {{name: v2-p95, signal: latency_p95, cohort: v2, threshold: 800ms, window: 5s,
       min_samples: 20}}
    - {{name: v2-vs-v1, compare: {{metric: latency, margin: 10%, alpha: 1%}},
       min_samples: {min_samples}}}
"""
# A population whose split follows the share (users are hashed into buckets).
USERS = [f"listener-{i}" for i in range(600)]


def policy(step_interval: str, min_samples: int) -> Policy:
    text = POLICY.format(step_interval=step_interval, min_samples=min_samples)
    return parse_policy("policy.yaml", text.encode())


@contextmanager
def controller_running(
    stack: Stack, state_path: Path, the_policy: Policy, clock: Clock
) -> Iterator[Controller]:
    source = EnvoyStatsSource(stack.admin_url, clock, 5.0)
    controller = Controller(
        the_policy, FileStateStore(state_path), {"envoy": source}, clock=clock,
        interval=CHECK_INTERVAL,
    )  # fmt: skip
    with run_controller_thread(controller):
        yield controller


Rollout = Callable[[Policy, Clock], tuple[Stack, Controller]]


@pytest.fixture
def rollout(make_stack: Callable[..., Stack], tmp_path: Path) -> Iterator[Rollout]:
    state_path = tmp_path / "rollout" / "state.json"
    state_path.parent.mkdir()
    with contextlib.ExitStack() as exits:

        def start(the_policy: Policy, clock: Clock) -> tuple[Stack, Controller]:
            stack = make_stack(sidecar_args=["--state", str(state_path)])
            controller = exits.enter_context(
                controller_running(stack, state_path, the_policy, clock)
            )
            controller.apply("start", "e2e-test")
            return stack, controller

        yield start


def status(controller: Controller) -> dict:  # type: ignore[type-arg]
    return controller.status(transitions=100)


def test_v2_20_percent_slower_under_the_threshold_is_rolled_back_by_the_comparison(
    rollout: Rollout,
) -> None:
    stack, controller = rollout(policy("1h", min_samples=50), SystemClock())
    stack.set_fault("v1", latency_ms=260)
    stack.set_fault("v2", latency_ms=260)
    with BackgroundLoad(stack, USERS) as load:
        wait_until(lambda: status(controller)["verdict"] == "pass", "both guards to pass", 30)
        fault_at = time.monotonic()
        stack.set_fault("v2", latency_ms=312)
        wait_until(lambda: status(controller)["phase"] == "rolled_back", "the rollback", 60)
        detected = time.monotonic() - fault_at
    assert not load.failures, load.failures
    last = status(controller)["transitions"][-1]
    assert last["reason"] == "guard breach: v2-vs-v1" and last["actor"] == "controller"
    p95, compare = last["guards"]["v2-p95"], last["guards"]["v2-vs-v1"]
    assert p95["verdict"] == "pass" and p95["value"] < 0.8
    assert compare["verdict"] == "fail" and compare["p_value"] <= 0.01
    assert compare["effect_low"] > 0.1 and compare["samples_v2"] >= 50
    print(
        f"\ncomparison breach (v2 312 ms vs v1 260 ms): fault -> rolled_back {detected:.1f}s; "
        f"effect {compare['value']:+.1%} [{compare['effect_low']:+.1%}, "
        f"{compare['effect_high']:+.1%}], p {compare['p_value']:.2g}, "
        f"n v2 {compare['samples_v2']} v1 {compare['samples_v1']}, v2 p95 "
        f"{p95['value'] * 1000:.0f} ms"
    )


def test_identical_cohorts_over_a_whole_ramp_are_never_rolled_back(rollout: Rollout) -> None:
    clock = ScaledClock(speed=1200.0)  # a 2 h step every 6 s of real traffic
    stack, controller = rollout(policy("2h", min_samples=30), clock)
    stack.set_fault("v1", latency_ms=40)
    stack.set_fault("v2", latency_ms=40)
    with BackgroundLoad(stack, USERS) as load:
        wait_until(
            lambda: status(controller)["phase"] in ("completed", "rolled_back"),
            "the ramp to end",
            150,
        )
    assert not load.failures, load.failures
    final = status(controller)
    reasons = [t["reason"] for t in final["transitions"]]
    assert final["phase"] == "completed", reasons
    assert reasons[-1] == "ramp complete" and not any("breach" in r for r in reasons)
    steps = [t for t in final["transitions"] if t["reason"].startswith("step to")]
    assert len(steps) == 8  # 10 % -> 20 % ... -> 90 %, then complete
    for t in [*steps, final["transitions"][-1]]:
        assert t["guards"]["v2-vs-v1"]["verdict"] == "pass"
    print(f"\nidentical cohorts: {len(steps) + 1} steps, no rollback, {len(load.replies)} requests")
