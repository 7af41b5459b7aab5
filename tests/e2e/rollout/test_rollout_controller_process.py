"""The controller as its own process (``extproc rollout controller``) on a scaled clock,
through the real stack: it ramps on schedule, holds a due step inside a freeze window, still
rolls back on a breach there, and after a SIGKILL a new process resumes the same stage and
share with nobody changing cohort.

The calendar runs 720 times faster than real time (an hour every 5 s), starting at 06:00
Europe/Berlin; the freeze window 07:30-10:00 covers the step due at 08:00.
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from extproc.rollout.clock import ScaledClock
from extproc.rollout.controller import Controller
from extproc.rollout.guards.signals import EnvoyStatsSource
from extproc.rollout.policy import load_policy
from extproc.rollout.state import Phase, RolloutState
from extproc.rollout.stores.state_store import FileStateStore
from extproc.stack import client
from extproc.stack.processes import ManagedProcess, wait_until
from extproc.stack.stack import DEFAULT_RULES, REPO_ROOT, Stack
from tests.support.background_load import BackgroundLoad
from tests.support.cohorts import expected_versions, interleave, users_by_cohort

pytestmark = pytest.mark.envoy

BERLIN = dt.timezone(dt.timedelta(hours=1))  # 2026-11-25 is winter time
START = dt.datetime(2026, 11, 25, 6, 0, tzinfo=BERLIN)
SPEED = 720.0
POLICY = """policy:
  rollout: gpt-sovits-v2
  initial_share: 10%
  step: 10%
  step_interval: 1h
  rollback_share: 0%
  freeze: {timezone: Europe/Berlin, windows: ["07:30-10:00"]}
  guards:
    - {name: v2-errors, signal: error_rate, cohort: v2, threshold: 0.5%, window: 3s,
       min_samples: 20}
"""
V2_USERS, V1_USERS = users_by_cohort(DEFAULT_RULES, 1000)
PEOPLE = interleave(V2_USERS, V1_USERS)


class ControllerProcess:
    """``python -m extproc rollout controller`` on a scaled clock; knows its calendar."""

    def __init__(self, stack: Stack, policy: Path, state: Path, log: Path) -> None:
        self.stack, self.policy, self.state, self.log = stack, policy, state, log
        self.process: ManagedProcess | None = None
        self.started_at = 0.0  # monotonic
        self.clock_start = START

    def start(self, clock_start: dt.datetime | None) -> None:
        """Start the process; without ``clock_start`` (a restart) it follows the calendar
        stored with the state, so this object's calendar goes on unchanged."""
        argv = [sys.executable, "-m", "extproc", "rollout", "controller"]
        argv += ["--policy", str(self.policy), "--state", str(self.state), "--rules"]
        argv += [str(DEFAULT_RULES), "--envoy-admin", self.stack.admin_url, "--admin", ""]
        argv += ["--interval", "0.25", "--clock-speed", str(SPEED)]
        if clock_start is not None:
            argv += ["--clock-start", clock_start.isoformat()]
            self.clock_start, self.started_at = clock_start, time.monotonic()
        self.process = ManagedProcess("controller", argv, self.log, cwd=REPO_ROOT)
        self.process.start()

    def calendar(self) -> dt.datetime:
        """The process's calendar, give or take its start-up (it anchors a little later, so
        its calendar is at most this)."""
        elapsed = (time.monotonic() - self.started_at) * SPEED
        return self.clock_start + dt.timedelta(seconds=elapsed)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()

    def stop(self) -> int | None:
        return self.process.stop() if self.process else None


@pytest.fixture
def controller_process(
    make_stack: Callable[..., Stack], tmp_path: Path
) -> Iterator[ControllerProcess]:
    state = tmp_path / "rollout" / "state.json"
    state.parent.mkdir()
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    load_policy(policy)  # the fixture itself must be valid
    stack = make_stack(sidecar_args=["--state", str(state)])
    process = ControllerProcess(stack, policy, state, tmp_path / "controller.log")
    try:
        yield process
    finally:
        process.stop()
        client.close_connections()


def cohorts(stack: Stack) -> dict[str, str | None]:
    return {user: client.send(stack, {"x-user-id": user}).version for user in PEOPLE}


def berlin(at: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(at, BERLIN)


def test_schedule_freeze_breach_and_restart_through_the_stack(
    controller_process: ControllerProcess,
) -> None:
    proc, stack = controller_process, controller_process.stack
    store = FileStateStore(proc.state)

    def current() -> RolloutState:
        state = store.read()
        assert state is not None
        return state

    proc.start(START)
    assert proc.process is not None
    wait_until(lambda: store.read() is not None, "the pending state", 10, proc.process)
    # The operator's switch, as the admin API calls it, on the same calendar.
    origin = store.clock_origin(None)  # stored by the controller before its first check
    assert origin is not None and origin.speed == SPEED
    clock = ScaledClock.from_origin(origin)
    source = EnvoyStatsSource(stack.admin_url, clock, 3.0)
    switch = Controller(load_policy(proc.policy), store, {"envoy": source}, clock=clock)
    switch.apply("start", "e2e-test")

    with BackgroundLoad(stack, PEOPLE) as load:
        # 07:00: the first step, once the guard passes on real traffic
        wait_until(lambda: current().stage == 2, "the step to 20%", 15, proc.process)
        assert current().share == 2000
        at_20 = expected_versions(DEFAULT_RULES, 2000, PEOPLE)
        wait_until(lambda: cohorts(stack) == at_20, "the sidecar to serve 20%", 5)

        # SIGKILL mid-ramp; a new process, started without --clock-start, resumes from the
        # store, its calendar where the old one was (the origin is stored with the state).
        proc.kill()
        proc.start(None)
        wait_until(lambda: proc.process is not None and proc.process.alive(), "restart", 5)
        assert (current().phase, current().stage, current().share) == (Phase.RAMPING, 2, 2000)
        assert cohorts(stack) == at_20  # nobody changed cohort

        # the next step falls due inside the freeze window (about 08:00): wait until well
        # past it, still inside the window
        due = berlin(current().next_step_at or 0)
        assert dt.time(7, 45) < due.time() < dt.time(8, 30), due
        wait_until(lambda: proc.calendar() > due + dt.timedelta(minutes=20), "08:20", 15)
        assert (current().stage, current().share, current().phase) == (2, 2000, Phase.RAMPING)

        # a breach inside the freeze window still rolls back
        stack.set_fault("v2", error_rate=0.5)
        wait_until(lambda: current().phase is Phase.ROLLED_BACK, "the rollback", 10)
        rolled_back = berlin(current().updated_at)
        assert dt.time(8, 0) < rolled_back.time() < dt.time(10, 0), rolled_back
        assert current().reason == "guard breach: v2-errors"
        wait_until(lambda: load.settled_on("v1", last=40), "traffic settled on v1", 10)
    assert not load.failures, load.failures
    reasons = [entry["reason"] for entry in store.audit(10)]
    assert reasons == ["start", "step to 20%", "guard breach: v2-errors"]
    assert proc.stop() == 0  # SIGTERM: a clean exit
