"""``extproc rollout ...`` end to end: the CLI as a subprocess against a real admin API.

Proves: the status table and --json; each change prints one line and is audited with
--actor; a refusal, an unreachable admin API and a missing token each print exactly one
line on stderr with exit 1 / 3 / 1 and change nothing; the real controller process serves
the admin API on a unix socket and refuses to start off loopback without a token.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from extproc.rollout.controller import Controller
from tests.sidecar.harness import wait_for

from .admin_harness import TOKEN, AdminThread, audit_lines, state_on_disk

REPO = Path(__file__).resolve().parents[2]


def rollout(*args: str, token: str = "") -> subprocess.CompletedProcess[str]:
    """Run ``python -m extproc rollout ARGS`` with EXTPROC_ADMIN_TOKEN set to ``token``."""
    env = {k: v for k, v in os.environ.items() if k != "EXTPROC_ADMIN_TOKEN"}
    if token:
        env["EXTPROC_ADMIN_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "extproc", "rollout", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=60,
    )


def test_start_then_status_as_a_table_and_as_json(admin: AdminThread, state_path: Path) -> None:
    done = rollout("start", "--admin", admin.target, "--actor", "bob@cli", "--reason", "go")
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == "start: admin-test ramping at stage 1, share 10% (revision 1)\n"
    assert audit_lines(state_path)[-1]["actor"] == "bob@cli"

    table = rollout("status", "--admin", admin.target)
    assert (table.returncode, table.stderr) == (0, "")
    for line in (
        "rollout      admin-test (revision 1)",
        "phase        ramping, stage 1",
        "share        10% on v2",
        "next step    to 20% in 2h (at 2026-11-25 14:00:00)",
        "frozen       no",
        "guards       not checked yet",
    ):
        assert line in table.stdout.splitlines()
    assert "pending -> ramping  0% -> 10%" in table.stdout
    assert "bob@cli" in table.stdout

    as_json = rollout("status", "--admin", admin.target, "--json")
    status = json.loads(as_json.stdout)
    assert (status["phase"], status["stage"], status["share"]) == ("ramping", 1, "10%")
    assert (status["next_step_in_seconds"], status["frozen"]) == (7200.0, False)
    assert status["next_step_at"] == "2026-11-25T14:00:00Z"
    assert [t["actor"] for t in status["transitions"]] == ["bob@cli"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("resume",), "cannot resume a rollout that is pending (allowed from: paused, "),
        (("set-share", "12.345%"), "share '12.345%' is finer than the 0.01% resolution"),
        (("pause", "--actor", ""), "an actor is required"),
    ],
)
def test_a_refusal_is_one_line_exit_1_and_changes_nothing(
    admin: AdminThread, state_path: Path, args: tuple[str, ...], message: str
) -> None:
    before = state_path.read_bytes()
    done = rollout(*args, "--admin", admin.target)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.startswith(f"extproc rollout {args[0]}: {message}")
    assert done.stderr.count("\n") == 1
    assert state_path.read_bytes() == before


def test_an_unreachable_admin_api_is_one_line_exit_3(tmp_path: Path) -> None:
    address = f"unix:{tmp_path}/nobody.sock"
    done = rollout("status", "--admin", address, "--timeout", "2")
    assert (done.returncode, done.stdout) == (3, "")
    assert done.stderr.startswith(f"extproc rollout status: admin API at {address} unavailable: ")
    assert done.stderr.count("\n") == 1


def test_the_cli_sends_the_token_from_the_environment(
    controller: Controller, start_admin: Callable[..., AdminThread], state_path: Path
) -> None:
    admin = start_admin(controller, token=TOKEN)
    denied = rollout("rollback", "--admin", admin.target)
    assert denied.returncode == 1
    assert denied.stderr.startswith("extproc rollout rollback: a valid 'authorization: Bearer")
    assert denied.stderr.rstrip().endswith("[UNAUTHENTICATED]")
    assert state_on_disk(state_path).revision == 0

    done = rollout("rollback", "--admin", admin.target, "--actor", "carol@cli", token=TOKEN)
    assert done.returncode == 0, done.stderr
    assert audit_lines(state_path)[-1]["actor"] == "carol@cli"


def test_an_unknown_command_is_a_usage_error() -> None:
    done = rollout("explode")
    assert done.returncode == 2
    assert "invalid choice: 'explode'" in done.stderr


POLICY_WITHOUT_GUARDS = """\
policy:
  rollout: cli-test
  initial_share: 5%
"""


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY_WITHOUT_GUARDS)
    return path


@pytest.fixture
def controller_process(policy_file: Path, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """``extproc rollout controller`` with its admin API on a unix socket (no token)."""
    socket, state = tmp_path / "admin.sock", tmp_path / "state.json"
    env = {k: v for k, v in os.environ.items() if k != "EXTPROC_ADMIN_TOKEN"}
    command = [sys.executable, "-m", "extproc", "rollout", "controller"]
    command += ["--policy", str(policy_file), "--state", str(state)]
    command += ["--admin", f"unix:{socket}", "--interval", "0.05"]
    process = subprocess.Popen(
        command,
        env=env,
        cwd=REPO,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: socket.exists() or process.poll() is not None, "the admin socket", 30)
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        yield f"unix:{socket}", state
    finally:
        process.send_signal(signal.SIGTERM)
        _, errors = process.communicate(timeout=30)
    assert process.returncode == 0, errors


def test_the_controller_process_serves_the_switch(controller_process: tuple[str, Path]) -> None:
    address, state = controller_process
    assert rollout("start", "--admin", address).returncode == 0
    done = rollout("rollback", "--admin", address, "--actor", "dave@cli", "--json")
    assert json.loads(done.stdout)["phase"] == "rolled_back"
    assert state_on_disk(state).share == 0
    assert audit_lines(state)[-1]["actor"] == "dave@cli"
    status = json.loads(rollout("status", "--admin", address, "--json").stdout)
    assert (status["phase"], status["resume_share"], status["verdict"]) == (
        "rolled_back",
        "5%",
        "pass",
    )


def test_the_controller_refuses_an_admin_api_off_loopback_without_a_token(
    policy_file: Path, tmp_path: Path
) -> None:
    state = tmp_path / "state.json"
    done = rollout(
        "controller", "--policy", str(policy_file), "--state", str(state), "--admin", "0.0.0.0:0"
    )
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == (
        "extproc rollout controller: refusing to serve the admin API on 0.0.0.0:0 without a "
        "token: set EXTPROC_ADMIN_TOKEN, or bind loopback (127.0.0.1:PORT) or unix:PATH"
    )
    assert not state.exists()  # refused before the controller touched anything
