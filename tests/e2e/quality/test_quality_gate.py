"""The audio gate through the real stack: speaking stand-ins -> Envoy's probe listener ->
the probe process (real scorers, out of process) -> the controller's quality guards -> the
state file -> the sidecar -> Envoy's routing.

v2 turned to silence, clipping, truncation, noise or an undecodable WAV, with normal latency
and HTTP 200: a quality guard fails and the controller rolls back while the latency and error
guards stay green; the figure printed is the time from the fault to the last v2 answer users got
(100 % v1). The probes keep judging v2 at 0 % share. Users cannot reach the probe routes.

CI settings, not the defaults (TTS_QUALITY_E2E_DEFAULTS=1 runs the defaults; docs/audio-gate.md
has both and what bounds the time):
probes every 2 s, 1.5 cores of scoring budget, DNSMOS on, ASR read-back off (no guard here
needs it; it doubles the scoring cost), 16 s guard windows, at least 3 pairs. One stack and
one probe process serve the whole module; each test resumes the rollout from a clean v2.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from extproc.rollout.clock import SystemClock
from extproc.rollout.controller import Controller
from extproc.rollout.guards.quality import QualitySource
from extproc.rollout.guards.signals import EnvoyStatsSource
from extproc.rollout.policy import Policy, parse_policy
from extproc.rollout.stores.state_store import FileStateStore
from extproc.stack import client
from extproc.stack.probes import LocalProbes
from extproc.stack.processes import free_port, wait_until
from extproc.stack.stack import DEFAULT_RULES, Stack
from tests.support import promql, scrape
from tests.support.background_load import BackgroundLoad
from tests.support.cohorts import interleave, users_by_cohort
from tests.support.controller_thread import run_controller_thread
from tests.support.speaking import SPEAKING_ENVOY, policy_head, serve_rollout

pytestmark = SPEAKING_ENVOY

CHECK_INTERVAL = 0.5
# TTS_QUALITY_E2E_DEFAULTS=1 runs the shipped defaults instead (probes every 10 s, 0.5 cores,
# ASR on; the example policy's 60 s windows, 4 pairs): slower, for measuring, not for CI.
DEFAULTS = os.environ.get("TTS_QUALITY_E2E_DEFAULTS") == "1"
PROBE_ARGS = [] if DEFAULTS else ["--interval", "2", "--cpu", "1.5", "--no-asr"]
QUALITY_WINDOW, QUALITY_MIN = ("60s", 4) if DEFAULTS else ("16s", 3)
PROFILE = "shipped defaults" if DEFAULTS else "CI: probes every 2 s"
RECOVERY = 240 if DEFAULTS else 90  # seconds for a clean v2 to pass again
ROLLBACK_TARGET = 60.0  # seconds from the fault to 100 % v1 (the target)
POLICY_TEXT = (
    policy_head(20)
    + """\
    - {name: mos-drop, signal: mos, cohort: v2-v1, threshold: 0.2, window: W, min_samples: N}
    - {name: silence, signal: silence_ratio, cohort: v2-v1, threshold: 30%, window: W,
       min_samples: N}
    - {name: clipping, signal: clipping_ratio, cohort: v2-v1, threshold: 1%, window: W,
       min_samples: N}
    - {name: truncation, signal: truncation, cohort: v2-v1, threshold: 30%, window: W,
       min_samples: N}
    - {name: invalid, signal: invalid_audio_rate, cohort: v2, threshold: 10%, window: W,
       min_samples: N}
"""
)
POLICY = (
    POLICY_TEXT.replace("window: W", f"window: {QUALITY_WINDOW}")
    .replace("min_samples: N", f"min_samples: {QUALITY_MIN}")
    .encode()
)
QUALITY_GUARDS = ("mos-drop", "silence", "clipping", "truncation", "invalid")
V2_USERS, V1_USERS = users_by_cohort(DEFAULT_RULES, parse_policy("p", POLICY).initial_share)
MIXED = interleave(V2_USERS, V1_USERS)


class Gate:
    """The module's stack, probe process and state file; a controller per test."""

    def __init__(self, stack: Stack, probes: LocalProbes, state: Path) -> None:
        self.stack, self.probes, self.state = stack, probes, state

    def set_fault(self, version: str, **faults: Any) -> None:
        body = json.dumps(faults).encode()
        request = urllib.request.Request(self.stack.tts_url(version) + "/admin/fault", data=body)
        with urllib.request.urlopen(request, timeout=5) as response:
            response.read()

    def pairs(self, horizon: float = 30.0) -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"{self.probes.url}/pairs?horizon={horizon}", timeout=5) as r:
            answer: dict[str, Any] = json.loads(r.read())
        return list(answer["pairs"])


@pytest.fixture(scope="module")
def gate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gate]:
    with gate_running(tmp_path_factory.mktemp("quality-gate")) as running:
        yield running


@contextlib.contextmanager
def gate_running(run_dir: Path) -> Iterator[Gate]:
    """A stack with the probe listener and a probe process (PROBE_ARGS), stopped at the end
    of the block (the logs printed if the block failed)."""
    state = run_dir / "state.json"
    stack = Stack.with_free_ports(
        probe_listener=True, run_dir=run_dir, sidecar_args=["--state", str(state)]
    )
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with contextlib.ExitStack() as running:
        running.enter_context(stack)
        probes = running.enter_context(
            LocalProbes(stack.probe_url, run_dir, env, port=free_port(), extra=PROBE_ARGS)
        )
        try:
            yield Gate(stack, probes, state)
        except BaseException:
            for process in [*stack.processes(), probes.process]:
                print(process.log_tail())
            raise
    client.close_connections()


@contextlib.contextmanager
def controller_running(gate: Gate, policy: Policy) -> Iterator[Controller]:
    clock = SystemClock()
    envoy_horizon = max(
        g.window for g in policy.guards if g.signal in ("latency_p95", "error_rate")
    )
    sources = {
        "envoy": EnvoyStatsSource(gate.stack.admin_url, clock, envoy_horizon),
        "quality": QualitySource(gate.probes.url, max(g.window for g in policy.guards)),
    }
    controller = Controller(
        policy, FileStateStore(gate.state), sources, clock=clock, interval=CHECK_INTERVAL
    )
    with run_controller_thread(controller):
        yield controller


def status(controller: Controller) -> dict[str, Any]:
    return controller.status(transitions=1)


def verdicts(controller: Controller) -> dict[str, str]:
    return {name: f["verdict"] for name, f in status(controller)["guards"].items()}


def start_or_resume(gate: Gate, controller: Controller) -> None:
    """Start the rollout (resume it after a rollback); wait until the sidecar serves it."""
    serve_rollout(gate.stack, controller, V2_USERS[0])


def ramping_with_passing_guards(gate: Gate, controller: Controller) -> None:
    """Start (or resume) the rollout on a clean v2, then wait until every guard passes. After
    a rollback v2 has no user traffic (its latency and error guards hold), so the resume waits
    for the quality guards only: the probes judge v2 at 0 %."""

    def quality_passes() -> bool:
        verdict = verdicts(controller)
        return all(verdict.get(name) == "pass" for name in QUALITY_GUARDS)

    wait_until(quality_passes, "the quality guards to pass on a clean v2", RECOVERY)
    start_or_resume(gate, controller)
    wait_until(lambda: status(controller)["verdict"] == "pass", "every guard to pass", 60)
    assert status(controller)["phase"] == "ramping"


# fault -> the guard meant to catch it (another quality guard may fail first: silence also
# sinks DNSMOS)
FAULTS = {
    "silence": ({"silence": True}, "silence"),
    "clipping": ({"clipping": 8.0}, "clipping"),
    "truncation": ({"truncate_ms": 400}, "truncation"),
    "noise": ({"noise": 0.1}, "mos-drop"),
    "invalid-wav": ({"invalid_wav": True}, "invalid"),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_bad_audio_with_good_latency_rolls_back_on_the_quality_guard(
    gate: Gate, fault: str
) -> None:
    faults, guard = FAULTS[fault]
    gate.set_fault("v2", reset=True)
    policy = parse_policy("policy.yaml", POLICY)
    with (
        controller_running(gate, policy) as controller,
        BackgroundLoad(gate.stack, MIXED, rate=20) as load,
    ):
        ramping_with_passing_guards(gate, controller)
        fault_at = time.monotonic()
        gate.set_fault("v2", **faults)
        wait_until(lambda: status(controller)["phase"] == "rolled_back", "the rollback", RECOVERY)
        rolled_back_at = time.monotonic()
        wait_until(lambda: load.settled_on("v1", last=20), "the traffic to settle on v1", 10)
        transition = status(controller)["transitions"][-1]
        # At 0 % share the probes still judge v2: new pairs keep arriving with v2 figures.
        seen = gate.pairs(horizon=60)[0]["age"]
        wait_until(lambda: gate.pairs(horizon=60)[0]["age"] < seen, "a probe at 0 % share", 30)
        assert gate.pairs(horizon=60)[0]["v2"] is not None
    gate.set_fault("v2", reset=True)
    assert not load.failures, load.failures
    assert {r.status for r in load.replies} == {200}  # nobody saw an error
    last_v2 = load.last_received("v2")
    assert last_v2 is not None
    print(
        f"\n{fault}: fault -> rolled_back {rolled_back_at - fault_at:.1f}s, fault -> last v2 "
        f"answer (100 % v1) {last_v2 - fault_at:.1f}s (target {ROLLBACK_TARGET:.0f}s at the "
        f"default interval; {PROFILE}); breached {transition['reason']!r}"
    )
    breached = transition["reason"].removeprefix("guard breach: ").split(", ")
    assert transition["reason"].startswith("guard breach:") and set(breached) <= set(QUALITY_GUARDS)
    figures = transition["guards"]
    assert figures["v2-p95"]["verdict"] == "pass" and figures["v2-errors"]["verdict"] == "pass"
    assert figures["v2-p95"]["samples"] >= 20 and figures["v2-errors"]["samples"] >= 20
    assert {figures[name]["verdict"] for name in breached} == {"fail"}
    if guard not in breached:  # another quality guard heard it first (e.g. silence -> MOS)
        print(f"  ({guard} was not the first to fail: {breached})")
    assert last_v2 - fault_at <= ROLLBACK_TARGET


def test_users_cannot_reach_the_probe_routes(gate: Gate) -> None:
    """The public listener has no /v2/ route: a v1 user asking for it is still decided (v1)."""
    for path in ("/v2/tts", "/v2/", "/v1/../v2/tts"):
        reply = client.send(gate.stack, {"x-user-id": V1_USERS[0], "x-tts-cohort": "v2"}, path=path)
        assert reply.version == "v1", path
    listeners = yaml.safe_load(gate.stack.envoy_config_path.read_text())["static_resources"]
    (probe,) = [item for item in listeners["listeners"] if item["name"] == "tts_probe"]
    assert probe["address"]["socket_address"]["address"] == "127.0.0.1"


def test_every_listed_audio_metric_is_in_a_live_scrape_of_the_probe_process(gate: Gate) -> None:
    """The tts_quality_* names of tests/fixtures/exported_metric_names.txt and of the deploy
    queries are all exported by the running probe process (after at least one round); the
    sidecar's live sampling names (tts_quality_live_*) are checked by test_live_guard.py."""
    wait_until(lambda: bool(gate.pairs(horizon=60)), "a probe round", 60)
    live = promql.exposed_names(scrape.fetch(gate.probes.url + "/metrics"))

    def probes_own(name: str) -> bool:
        return name.startswith("tts_quality_") and not name.startswith("tts_quality_live_")

    listed = {name for name in promql.listed_names() if probes_own(name)}
    deployed = {n for n in promql.deploy_metric_names() if probes_own(n)}
    assert listed and deployed <= listed
    assert not listed - live, f"listed but not exported: {sorted(listed - live)}"
