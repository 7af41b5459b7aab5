"""A compare guard on MOS through the real stack: speaking stand-ins -> Envoy's probe listener
-> the probe process (real DNSMOS, out of process) -> the controller's always-valid paired
test (extproc.rollout.compare.paired) -> the state file -> the sidecar -> Envoy's routing.

v2 made noisy (white noise sd 0.1: DNSMOS about 1.3 below v1 on the same text) with normal
latency and HTTP 200: the compare guard, the only audio guard of the policy, fails and the
controller rolls back; the rollback's audit entry carries the test's figures. CI settings as
in test_quality_gate (probes every 2 s, ASR off), at least 6 pairs before a verdict.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import pytest

from extproc.rollout.clock import SystemClock
from extproc.rollout.controller import Controller
from extproc.rollout.guards.paired_compare import PAIRED_HORIZON
from extproc.rollout.guards.quality import QualitySource
from extproc.rollout.guards.signals import EnvoyStatsSource
from extproc.rollout.policy import parse_policy
from extproc.rollout.stores.state_store import FileStateStore
from extproc.stack.processes import wait_until
from tests.e2e.quality.test_quality_gate import (
    MIXED,
    RECOVERY,
    Gate,
    gate_running,
    start_or_resume,
    status,
)
from tests.support.background_load import BackgroundLoad
from tests.support.controller_thread import run_controller_thread
from tests.support.speaking import SPEAKING_ENVOY, policy_head

pytestmark = SPEAKING_ENVOY

CHECK_INTERVAL = 0.5
POLICY = (
    policy_head(20)
    + """\
    - {name: mos-vs-v1, compare: {metric: mos, margin: 0.2, alpha: 1%}, min_samples: 6}
"""
).encode()


@pytest.fixture(scope="module")
def gate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gate]:
    with gate_running(tmp_path_factory.mktemp("quality-compare")) as running:
        yield running


@contextlib.contextmanager
def compare_controller(gate: Gate) -> Iterator[Controller]:
    policy = parse_policy("policy.yaml", POLICY)
    clock = SystemClock()
    sources = {
        "envoy": EnvoyStatsSource(gate.stack.admin_url, clock, 10.0),
        "quality": QualitySource(gate.probes.url, PAIRED_HORIZON),
    }
    controller = Controller(
        policy, FileStateStore(gate.state), sources, clock=clock, interval=CHECK_INTERVAL
    )
    with run_controller_thread(controller):
        yield controller


def test_noisy_v2_rolls_back_on_the_mos_compare_guard(gate: Gate) -> None:
    gate.set_fault("v2", reset=True)
    with (
        compare_controller(gate) as controller,
        BackgroundLoad(gate.stack, MIXED, rate=20) as load,
    ):

        def compare_verdict() -> str:
            return str(status(controller)["guards"]["mos-vs-v1"]["verdict"])

        wait_until(lambda: compare_verdict() == "pass", "the compare guard to pass", RECOVERY)
        start_or_resume(gate, controller)
        # the new stage is a new test: it holds for 6 pairs, then passes on the clean v2
        wait_until(lambda: status(controller)["verdict"] == "pass", "every guard to pass", 90)
        fault_at = time.monotonic()
        gate.set_fault("v2", noise=0.1)
        wait_until(lambda: status(controller)["phase"] == "rolled_back", "the rollback", RECOVERY)
        rolled_back_at = time.monotonic()
        transition = status(controller)["transitions"][-1]
    gate.set_fault("v2", reset=True)
    assert not load.failures, load.failures
    assert {r.status for r in load.replies} == {200}
    figure = transition["guards"]["mos-vs-v1"]
    print(
        f"\nnoise sd 0.1 on v2: fault -> rolled back {rolled_back_at - fault_at:.1f}s on "
        f"{transition['reason']!r}; MOS drop {figure['value']:+.3f} "
        f"[{figure['effect_low']:+.3f}, {figure['effect_high']:+.3f}], "
        f"p {figure['p_value']:.3g}, {figure['samples_v2']} pairs"
    )
    assert transition["reason"] == "guard breach: mos-vs-v1"
    assert figure["verdict"] == "fail" and figure["metric"] == "mos"
    assert figure["p_value"] <= 0.01 and figure["effect_low"] > 0.2
    assert transition["guards"]["v2-p95"]["verdict"] == "pass"
