"""What the audio-gate e2e tests share: their markers (a real Envoy, espeak-ng for the
speaking stand-ins), the head of their policies (the latency and error guards that must
stay green while an audio guard rolls v2 back) and starting the rollout they judge."""

from __future__ import annotations

import pytest

from extproc.rollout.controller import Controller
from extproc.stack import client
from extproc.stack.processes import wait_until
from extproc.stack.stack import Stack
from extproc.standins.speech import espeak_available

NEEDS_ESPEAK = pytest.mark.skipif(
    not espeak_available(), reason="espeak-ng missing (scripts/system-packages)"
)
SPEAKING_ENVOY = [pytest.mark.envoy, NEEDS_ESPEAK]


def policy_head(min_samples: int) -> str:
    """A policy at 10 % that never steps on its own, with the v2 latency and error guards;
    the caller appends its audio guards (indented four spaces)."""
    return f"""policy:
  rollout: gpt-sovits-v2
  initial_share: 10%
  step: 10%
  step_interval: 1h
  rollback_share: 0%
  guards:
    - {{name: v2-p95, signal: latency_p95, cohort: v2, threshold: 800ms, window: 10s,
       min_samples: {min_samples}}}
    - {{name: v2-errors, signal: error_rate, cohort: v2, threshold: 0.5%, window: 10s,
       min_samples: {min_samples}}}
"""


def serve_rollout(stack: Stack, controller: Controller, v2_user: str) -> None:
    """Start the rollout (resume it after a rollback; a ramping one is left as it is) and
    wait until the sidecar serves ``v2_user`` (a user of the v2 cohort) from v2."""
    phase = controller.status(transitions=1)["phase"]
    if phase != "ramping":
        controller.apply("resume" if phase == "rolled_back" else "start", "e2e-test")
    wait_until(
        lambda: client.send(stack, {"x-user-id": v2_user}).version == "v2",
        "the sidecar to serve the started rollout",
        10,
        stack.sidecar,
    )
