"""Process helpers: readiness errors carry the log, stopping never leaves a process behind."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest

from extproc.stack.processes import (
    ManagedProcess,
    NotReadyError,
    free_port,
    port_accepts,
    wait_for_port,
    wait_until,
)


def python(tmp_path: Path, code: str) -> ManagedProcess:
    return ManagedProcess("child", [sys.executable, "-c", code], tmp_path / "child.log")


def running(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie (an orphan waiting for init to reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_a_child_that_dies_early_fails_readiness_with_its_log(tmp_path: Path) -> None:
    code = "import sys; print('bad config: line 3', file=sys.stderr); sys.exit(3)"
    with python(tmp_path, code) as child, pytest.raises(NotReadyError) as raised:
        wait_for_port("127.0.0.1", free_port(), timeout=30, process=child)
    assert "exited with code 3" in str(raised.value)
    assert "bad config: line 3" in str(raised.value)


def test_timeout_names_what_was_awaited() -> None:
    with pytest.raises(NotReadyError, match=r"timed out after 0\.1s waiting for the moon"):
        wait_until(lambda: False, "the moon", timeout=0.1)


def test_stop_takes_the_whole_process_group(tmp_path: Path) -> None:
    code = (
        "import subprocess, sys, time\n"
        "g = subprocess.Popen(['sleep', '300'])\n"
        "print('grandchild', g.pid, flush=True)\n"
        "time.sleep(300)\n"
    )
    child = python(tmp_path, code).start()
    log = child.log_path
    wait_until(lambda: "grandchild" in log.read_text(), "the grandchild", 30, child)
    grandchild = int(log.read_text().split()[1])
    child.stop(timeout=5)
    assert not child.alive()
    wait_until(lambda: not running(grandchild), "the grandchild to end", 10)


def test_sigterm_ignored_means_sigkill_after_the_deadline(tmp_path: Path) -> None:
    code = (
        "import signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ready', flush=True)\n"
        "time.sleep(300)\n"
    )
    child = python(tmp_path, code).start()
    wait_until(lambda: "ready" in child.log_path.read_text(), "the child", 30, child)
    assert child.stop(timeout=0.2) == -signal.SIGKILL


def test_a_stopped_child_still_stops(tmp_path: Path) -> None:
    child = python(tmp_path, "import time; print('ready', flush=True); time.sleep(300)").start()
    wait_until(lambda: "ready" in child.log_path.read_text(), "the child", 30, child)
    child.signal(signal.SIGSTOP)
    assert child.alive()
    assert child.stop(timeout=10) == -signal.SIGTERM


def test_the_context_manager_stops_on_error(tmp_path: Path) -> None:
    child = python(tmp_path, "import time; time.sleep(300)")
    with pytest.raises(RuntimeError, match="boom"), child:
        raise RuntimeError("boom")
    assert not child.alive()


def test_free_ports_are_distinct_and_free() -> None:
    ports = {free_port() for _ in range(20)}
    assert len(ports) == 20
    assert not any(port_accepts("127.0.0.1", port) for port in ports)
