"""Live audio guards through the real stack: user traffic -> Envoy -> the real sidecar sampling
every request (``EXTPROC_SAMPLE_RATE=1``) -> its scoring child (the real scorers) -> the
``tts_quality_live_*`` figures on its /metrics -> the controller's live guards (``source:
live``, scraped without Prometheus) -> the state file -> the sidecar -> Envoy's routing.

- both models healthy: the live guards hold until they have samples, then pass; nothing
  fails and the ramp keeps going;
- v2 turned silent (HTTP 200, normal latency): a live guard fails and the controller rolls
  back while the latency and error guards stay green.

CI settings: checks every 0.5 s, 30 s live windows, at least 3 samples per cohort, a scoring
budget of 1 core. One stack serves the module; each test runs its own controller on the
module's state file.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from extproc.rollout.clock import SystemClock
from extproc.rollout.controller import Controller
from extproc.rollout.controller_command import build_sources
from extproc.rollout.policy import parse_policy
from extproc.rollout.stores.state_store import FileStateStore
from extproc.stack import client
from extproc.stack.processes import wait_until
from extproc.stack.stack import DEFAULT_RULES, Stack
from tests.support import promql, scrape
from tests.support.background_load import BackgroundLoad
from tests.support.cohorts import interleave, users_by_cohort
from tests.support.controller_thread import run_controller_thread
from tests.support.speaking import SPEAKING_ENVOY, policy_head, serve_rollout
from tests.support.standin_faults import set_fault

pytestmark = SPEAKING_ENVOY

CHECK_INTERVAL = 0.5
POLICY = (
    policy_head(10)
    + """\
    - {name: live-silence, signal: silence_ratio, cohort: v2-v1, threshold: 30%, window: 30s,
       min_samples: 3, source: live}
    - {name: live-mos, signal: mos, cohort: v2, threshold: 2.5, window: 30s, min_samples: 3,
       source: live}
    - {name: live-invalid, signal: invalid_audio_rate, cohort: v2, threshold: 50%, window: 30s,
       min_samples: 3, source: live}
"""
).encode()
LIVE_GUARDS = ("live-silence", "live-mos", "live-invalid")
V2_USERS, V1_USERS = users_by_cohort(DEFAULT_RULES, parse_policy("p", POLICY).initial_share)
MIXED = interleave(V2_USERS, V1_USERS)
RATE = 8.0  # requests per second, half of them v2 at 10 % (the example users)


class Rig:
    """The module's stack (live sampling at 100 %) and the state file its sidecar follows."""

    def __init__(self, stack: Stack, state: Path) -> None:
        self.stack, self.state = stack, state


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    run_dir = tmp_path_factory.mktemp("live-guard")
    rules, state = run_dir / "rules.yaml", run_dir / "state.json"
    shutil.copyfile(DEFAULT_RULES, rules)
    env = {"EXTPROC_SAMPLE_RATE": "1", "EXTPROC_SAMPLE_CPU": "1"}
    stack = Stack.with_free_ports(
        run_dir=run_dir, rules=rules, sidecar_env=env, sidecar_args=["--state", str(state)]
    )
    with stack:
        try:
            yield Rig(stack, state)
        except BaseException:
            for process in stack.processes():
                print(process.log_tail())
            raise
    client.close_connections()


@contextlib.contextmanager
def controller_running(rig: Rig) -> Iterator[Controller]:
    """A controller built the way ``extproc rollout controller`` builds its sources (Envoy's
    admin for latency and errors, the sidecar's /metrics for the live guards)."""
    policy = parse_policy("policy.yaml", POLICY)
    clock = SystemClock()
    sources = build_sources(policy, clock, rig.stack.admin_url, "", "", rig.stack.metrics_url)
    controller = Controller(
        policy, FileStateStore(rig.state), sources, clock=clock, interval=CHECK_INTERVAL
    )
    with run_controller_thread(controller):
        yield controller


def status(controller: Controller) -> dict[str, Any]:
    return controller.status(transitions=1)


def live_verdicts(controller: Controller) -> set[str]:
    guards = status(controller)["guards"]
    return {guards[name]["verdict"] for name in LIVE_GUARDS if name in guards}


def test_healthy_models_hold_then_pass_and_never_fail(rig: Rig) -> None:
    set_fault(rig.stack, "v2", reset=True)
    with controller_running(rig) as controller:
        # the first check has one scrape of the sidecar: no window yet, every live guard holds
        assert live_verdicts(controller) == {"hold"}
        serve_rollout(rig.stack, controller, V2_USERS[0])
        with BackgroundLoad(rig.stack, MIXED, rate=RATE) as load:
            wait_until(lambda: live_verdicts(controller) == {"pass"}, "the live guards", 120)
            passed_at = controller.checks
            wait_until(lambda: controller.checks >= passed_at + 30, "30 more checks", 60)
            final = status(controller)
    assert not load.failures, load.failures
    assert final["phase"] == "ramping"  # a single failing check would have rolled back
    assert final["verdict"] in ("pass", "hold")
    figures = final["guards"]
    print(
        "\nhealthy live figures: "
        + "; ".join(
            f"{name} {_value(figures[name])}: {figures[name]['detail']}" for name in LIVE_GUARDS
        )
    )
    assert all(figures[name]["source"] == "live" for name in LIVE_GUARDS)


def test_silent_v2_rolls_back_on_a_live_guard_while_latency_and_errors_stay_green(
    rig: Rig,
) -> None:
    set_fault(rig.stack, "v2", reset=True)
    with controller_running(rig) as controller:
        serve_rollout(rig.stack, controller, V2_USERS[0])
        with BackgroundLoad(rig.stack, MIXED, rate=RATE) as load:
            wait_until(lambda: live_verdicts(controller) == {"pass"}, "the live guards", 120)
            fault_at = time.monotonic()
            set_fault(rig.stack, "v2", silence=True)
            try:
                wait_until(lambda: status(controller)["phase"] == "rolled_back", "rollback", 120)
                rolled_back_at = time.monotonic()
                wait_until(lambda: load.settled_on("v1", last=10), "traffic on v1", 10)
            finally:
                set_fault(rig.stack, "v2", reset=True)
        transition = status(controller)["transitions"][-1]
    assert not load.failures, load.failures
    assert {r.status for r in load.replies} == {200}  # nobody saw an error
    breached = transition["reason"].removeprefix("guard breach: ").split(", ")
    assert transition["reason"].startswith("guard breach:") and set(breached) <= set(LIVE_GUARDS)
    figures = transition["guards"]
    assert figures["v2-p95"]["verdict"] == "pass" and figures["v2-errors"]["verdict"] == "pass"
    assert {figures[name]["verdict"] for name in breached} == {"fail"}
    print(
        f"\nsilent v2: fault -> rolled_back {rolled_back_at - fault_at:.1f}s (live windows 30 s,"
        f" checks every {CHECK_INTERVAL} s); breached {breached}: "
        + "; ".join(
            f"{name} {_value(figures[name])}: {figures[name]['detail']}" for name in breached
        )
    )


def _value(figure: dict[str, Any]) -> str:
    return "-" if figure["value"] is None else f"{figure['value']:.3g}"


def test_every_listed_live_metric_is_in_a_scrape_of_the_sampling_sidecar(rig: Rig) -> None:
    """The tts_quality_live_* names of tests/fixtures/exported_metric_names.txt and of the
    deploy queries are all exported by the sidecar while it samples."""
    exposed = promql.exposed_names(scrape.fetch(rig.stack.metrics_url))
    listed = {n for n in promql.listed_names() if n.startswith("tts_quality_live_")}
    deployed = {n for n in promql.deploy_metric_names() if n.startswith("tts_quality_live_")}
    assert listed and deployed <= listed
    assert not listed - exposed, f"listed but not exported: {sorted(listed - exposed)}"
