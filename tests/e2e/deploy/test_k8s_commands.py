"""The manifests' own command lines start the real programs. Each container's args are run
as written except where this machine differs from a pod: files under a ConfigMap mount are
the repository files that ConfigMap is generated from, 0.0.0.0 becomes 127.0.0.1 on a free
port (loopback only here), the etcd URL becomes a state file (the etcd store is tested in
tests/fleet), and Prometheus is a port where nothing listens (the guards then hold)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from extproc.stack.processes import ManagedProcess, free_port, grpc_serving, wait_until
from tests.support import k8s
from tests.support.cli_help import program_path

PLAIN = k8s.build(k8s.K8S)
TOKEN = "a-test-token-of-32-characters-00"


def local_args(workload: str, container: str, tmp_path: Path) -> tuple[list[str], dict[str, int]]:
    """(the container's args made local, option -> the loopback port it got)."""
    args: list[str] = []
    ports: dict[str, int] = {}
    for arg in k8s.container(PLAIN, workload, container)["args"]:
        option, sep, value = arg.partition("=")
        if value.startswith("/etc/"):
            value = str(k8s.mounted_file(PLAIN, workload, value))
        elif value.startswith("0.0.0.0:"):
            ports[option] = free_port()
            value = f"127.0.0.1:{ports[option]}"
        elif value.startswith("etcd://"):
            value = str(tmp_path / "state.json")
        elif value.startswith("http://prometheus"):
            value = f"http://127.0.0.1:{free_port()}"
        args.append(f"{option}{sep}{value}" if sep else arg)
    return args, ports


def test_gateway_sidecar_command_serves(tmp_path: Path) -> None:
    args, ports = local_args("tts-gateway", "extproc", tmp_path)
    argv = [program_path("extproc"), *args]
    with ManagedProcess("sidecar", argv, tmp_path / "sidecar.log") as sidecar:
        target = f"127.0.0.1:{ports['--listen']}"
        wait_until(
            lambda: grpc_serving(target, "envoy.service.ext_proc.v3.ExternalProcessor"),
            "the sidecar to serve",
            30,
            sidecar,
        )


def test_controller_command_serves_its_admin_api_with_the_token(tmp_path: Path) -> None:
    args, ports = local_args("tts-canary-controller", "controller", tmp_path)
    env = {**os.environ, "EXTPROC_ADMIN_TOKEN": TOKEN, "EXTPROC_LEADER_ID": "controller-0"}
    argv = [program_path("extproc"), *args]
    admin = f"127.0.0.1:{ports['--admin']}"
    status = [program_path("extproc"), "rollout", "status", "--admin", admin, "--json"]
    with ManagedProcess("controller", argv, tmp_path / "controller.log", env=env) as controller:

        def answers() -> bool:
            done = subprocess.run(status, env=env, capture_output=True, timeout=30)
            return done.returncode == 0

        wait_until(answers, "the admin API to answer", 30, controller)
        without = {k: v for k, v in env.items() if k != "EXTPROC_ADMIN_TOKEN"}
        refused = subprocess.run(status, env=without, capture_output=True, text=True, timeout=30)
        assert refused.returncode == 1 and "UNAUTHENTICATED" in refused.stderr


def test_controller_refuses_to_start_with_the_placeholder_token(tmp_path: Path) -> None:
    """The Secret ships an empty admin token: off loopback the controller then refuses to
    start, before it binds anything (so this test binds nothing off loopback)."""
    args = k8s.container(PLAIN, "tts-canary-controller", "controller")["args"]
    (admin,) = [a for a in args if a.startswith("--admin=0.0.0.0:")]
    local, _ = local_args("tts-canary-controller", "controller", tmp_path)
    local = [admin if a.startswith("--admin=") else a for a in local]
    env = {**os.environ, "EXTPROC_ADMIN_TOKEN": ""}
    done = subprocess.run(
        [sys.executable, "-m", "extproc", *local],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "without a token" in done.stderr


@pytest.fixture(autouse=True)
def _no_otlp(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
