"""``extproc stack``: the demo through the documented ports, and nothing left behind after it
or after SIGTERM. Skipped when a documented port is already taken (e.g. a stack is running)."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from extproc.stack.controller import ADMIN_PORT, METRICS_PORT
from extproc.stack.envoy_config import default_ports
from extproc.stack.probes import PROBES_PORT
from extproc.stack.processes import port_accepts, wait_until
from extproc.stack.stack import DEFAULT_METRICS_PORT, REPO_ROOT

pytestmark = pytest.mark.envoy

PORTS = [
    *vars(default_ports()).values(),
    DEFAULT_METRICS_PORT,
    ADMIN_PORT,
    METRICS_PORT,
    PROBES_PORT,
]


@pytest.fixture(autouse=True)
def documented_ports_free() -> None:
    busy = [port for port in PORTS if port_accepts("127.0.0.1", port)]
    if busy:
        pytest.skip(f"documented ports in use: {busy}")


def stack_command(run_dir: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "extproc", "stack", "--run-dir", str(run_dir), *args]


def test_demo_prints_the_table_and_leaves_nothing_behind(tmp_path: Path) -> None:
    argv = stack_command(tmp_path, "--demo", "--demo-users", "100", "--demo-requests", "500")
    result = subprocess.run(
        argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=180, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "users that saw more than one upstream: 0 of 100 (sticky)" in result.stdout
    assert "decisions from Envoy's access log (500 entries)" in result.stdout
    assert not [port for port in PORTS if port_accepts("127.0.0.1", port)]


def test_sigterm_stops_everything_and_exits_0(tmp_path: Path) -> None:
    out = tmp_path / "stdout.log"
    with out.open("w") as stdout:
        command = subprocess.Popen(
            stack_command(tmp_path), cwd=REPO_ROOT, stdout=stdout, stderr=subprocess.STDOUT
        )
    try:
        wait_until(lambda: "Ctrl-C stops everything" in out.read_text(), "the banner", 60)
        assert "curl -s -D- -o /tmp/out.wav" in out.read_text()
        assert f"audio probes     http://127.0.0.1:{PROBES_PORT}/pairs" in out.read_text()
        # The local rollout controller is part of the stack: the switch works against it.
        rollout = [sys.executable, "-m", "extproc", "rollout"]
        status = subprocess.run([*rollout, "status", "--json"], capture_output=True, text=True)
        assert status.returncode == 0, status.stderr
        assert '"phase": "pending"' in status.stdout
        started = subprocess.run([*rollout, "start"], capture_output=True, text=True)
        assert started.returncode == 0, started.stderr
        assert "ramping at stage 1, share 10%" in started.stdout
        assert (tmp_path / "rollout-state.json").is_file()
        # The example policy's audio guards are judged from the stack's probe process.
        table = subprocess.run([*rollout, "status"], capture_output=True, text=True)
        assert table.returncode == 0, table.stderr
        assert "mos-drop" in table.stdout and "invalid-audio" in table.stdout
        command.send_signal(signal.SIGTERM)
        assert command.wait(timeout=30) == 0
    finally:
        if command.poll() is None:
            command.kill()
            command.wait()
    assert not [port for port in PORTS if port_accepts("127.0.0.1", port)]
