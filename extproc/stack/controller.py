"""The rollout controller of the local stack: examples/policy.yaml over a state file.

The sidecar follows the same state file (``--state``), so ``extproc rollout status|start|...``
works against the local stack on the admin API's default address. A new state starts
``pending``, which serves the rules file's share: nothing changes until someone runs
``extproc rollout start``. The state lives in the run directory, so a restarted stack
resumes the rollout where it was.
"""

from __future__ import annotations

import sys
from pathlib import Path

from extproc.stack.processes import ManagedProcess, Service, wait_for_port

ADMIN_HOST, ADMIN_PORT = "127.0.0.1", 50061
METRICS_PORT = 9465  # guard figures (deploy/prometheus/prometheus.yml job tts-canary-controller)


class LocalController(Service):
    """``extproc rollout controller`` as a child process; a context manager."""

    def __init__(
        self,
        policy: Path,
        state: Path,
        envoy_admin: str,
        run_dir: Path,
        env: dict[str, str],
        quality: str = "",
        live_metrics: str = "",
    ) -> None:
        """``quality``: the probe process's URL for the policy's quality guards ('' = the
        controller's default, where nothing answers without probes: those guards hold);
        ``live_metrics``: the sidecar's /metrics URL for live audio guards ('' = default)."""
        self.policy, self.state = policy, state
        argv = [sys.executable, "-m", "extproc", "rollout", "controller"]
        argv += ["--policy", str(policy), "--state", str(state), "--envoy-admin", envoy_admin]
        argv += ["--quality", quality] if quality else []
        argv += ["--live-metrics", live_metrics] if live_metrics else []
        argv += [
            "--admin",
            f"{ADMIN_HOST}:{ADMIN_PORT}",
            "--metrics",
            f"{ADMIN_HOST}:{METRICS_PORT}",
        ]
        self.process = ManagedProcess("controller", argv, run_dir / "controller.log", env=env)

    @property
    def admin(self) -> str:
        return f"{ADMIN_HOST}:{ADMIN_PORT}"

    @property
    def metrics_url(self) -> str:
        return f"http://{ADMIN_HOST}:{METRICS_PORT}/metrics"

    def wait_ready(self) -> None:
        wait_for_port(ADMIN_HOST, ADMIN_PORT, 30.0, self.process)
