"""The supervisor's restart policy without real workers: backoff series, crash loops after
ready, and a worker that hangs before it is ready."""

from __future__ import annotations

import subprocess
import sys

import pytest

from extproc.settings import ServeSettings
from extproc.sidecar.workers import supervisor as W


def _supervisor() -> W.Supervisor:
    settings = ServeSettings(
        rules="rules.yaml", listen="127.0.0.1:50051", metrics="", grace_seconds=1,
        poll_seconds=1, loop="asyncio", log_level="info", workers=2,
    )  # fmt: skip
    return W.Supervisor(settings)


def _ready(worker: W.Worker, at: float) -> None:
    worker.metrics_port, worker.ever_ready, worker.ready_at = 1234, True, at


def test_restart_delay_doubles_up_to_the_cap() -> None:
    delays = [W.restart_delay(n) for n in range(10)]
    assert delays[:4] == [0.1, 0.2, 0.4, 0.8]
    assert delays == sorted(delays) and max(delays) == W.BACKOFF_MAX_SECONDS
    assert W.restart_delay(10_000) == W.BACKOFF_MAX_SECONDS


def test_a_worker_that_keeps_crashing_right_after_ready_backs_off() -> None:
    supervisor, worker = _supervisor(), W.Worker(0)
    now, delays = 1000.0, []
    for _ in range(8):
        _ready(worker, now)
        now += 0.5  # dies half a second after it was ready
        supervisor._reap(worker, 1, now)
        assert worker.restart_at is not None
        delays.append(worker.restart_at - now)
        now = worker.restart_at
    assert delays[:3] == pytest.approx([0.1, 0.2, 0.4])
    assert delays[-1] == W.BACKOFF_MAX_SECONDS


def test_a_worker_that_stayed_up_restarts_at_once_again() -> None:
    supervisor, worker = _supervisor(), W.Worker(0)
    for _ in range(4):
        _ready(worker, 0.0)
        supervisor._reap(worker, 1, 1.0)
    assert worker.crashes == 4
    _ready(worker, 100.0)
    supervisor._reap(worker, 1, 100.0 + W.STABLE_SECONDS)
    assert worker.crashes == 1
    assert worker.restart_at == pytest.approx(100.0 + W.STABLE_SECONDS + W.BACKOFF_FIRST_SECONDS)


def test_a_first_start_that_fails_ends_the_supervisor_with_its_code() -> None:
    with pytest.raises(W.StartFailed) as failed:
        _supervisor()._reap(W.Worker(1), 3, 0.0)
    assert failed.value.code == 3


def test_a_worker_that_hangs_before_ready_is_killed_and_reaped_as_a_start_failure() -> None:
    supervisor, worker = _supervisor(), W.Worker(0)
    worker.proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        worker.started_at = 0.0
        supervisor._kill_if_start_hangs(worker, W.START_TIMEOUT_SECONDS - 1)
        assert worker.proc.poll() is None  # not yet
        supervisor._kill_if_start_hangs(worker, W.START_TIMEOUT_SECONDS)
        code = worker.proc.poll()
        assert code is not None and code < 0  # killed
        with pytest.raises(W.StartFailed):  # never ready: the supervisor gives up
            supervisor._reap(worker, code, W.START_TIMEOUT_SECONDS)
    finally:
        if worker.proc is not None and worker.proc.poll() is None:
            worker.proc.kill()
            worker.proc.wait()
