"""The controller with a fake clock and a fake Envoy: the ramp, holds, breaches, freeze
windows, the doubling cap, two controllers racing on one store, restarts, and the switch."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import threading
from pathlib import Path

import pytest

from extproc.core.bucket import BUCKETS
from extproc.rollout import state as sm
from extproc.rollout.clock import FakeClock
from extproc.rollout.controller import Controller
from extproc.rollout.guards.signals import EnvoyStatsSource
from extproc.rollout.policy import Policy, parse_policy
from extproc.rollout.state import Phase, RolloutState, TransitionError
from extproc.rollout.stores.state_store import Conflict, FileStateStore
from tests.support.fake_envoy_stats import FakeEnvoyStats

PCT = BUCKETS // 100
HOUR = 3600.0
NOON = dt.datetime.fromisoformat("2026-11-25T12:00:00+01:00")  # outside the freeze windows
POLICY_YAML = """policy:
  rollout: gpt-sovits-v2
  initial_share: {initial}
  step: 10%
  step_interval: 2h
  rollback_share: 0%
  freeze:
    timezone: Europe/Berlin
    windows: ["07:00-09:30", "18:00-22:00"]
  guards:
    - {{name: v2-p95, signal: latency_p95, cohort: v2, threshold: 800ms, window: 10s,
       min_samples: 50}}
    - {{name: v2-errors, signal: error_rate, cohort: v2, threshold: 0.5%, window: 10s,
       min_samples: 50}}
"""


def make_policy(initial: str = "10%", freeze: bool = True) -> Policy:
    text = POLICY_YAML.format(initial=initial)
    if not freeze:
        text = text.replace('["07:00-09:30", "18:00-22:00"]', "[]")
    return parse_policy("policy.yaml", text.encode())


class Rig:
    """A controller over a file store, a fake Envoy and a fake clock (one per test)."""

    def __init__(
        self, tmp_path: Path, policy: Policy | None = None, clock: FakeClock | None = None
    ) -> None:
        self.policy = policy or make_policy()
        self.clock = clock or FakeClock(NOON)
        self.envoy = FakeEnvoyStats()
        self.store = FileStateStore(tmp_path / "state.json")
        self.controller = self.make_controller()

    def make_controller(self, store: FileStateStore | None = None) -> Controller:
        source = EnvoyStatsSource("http://127.0.0.1:9901", self.clock, 10.0, fetch=self.envoy.fetch)
        return Controller(self.policy, store or self.store, {"envoy": source}, clock=self.clock)

    def check(self, controller: Controller | None = None) -> None:
        asyncio.run((controller or self.controller).check())

    def traffic(
        self,
        seconds: float,
        *,
        latency_ms: float = 40,
        error_every: int = 0,
        controllers: tuple[Controller, ...] = (),
    ) -> None:
        """``seconds`` of traffic at 20 req/s per cohort, one check (of each controller)
        per second."""
        for _ in range(int(seconds)):
            self.envoy.serve("tts_v1", 20, latency_ms=40)
            errors = 20 // error_every if error_every else 0
            self.envoy.serve("tts_v2", 20, latency_ms=latency_ms, errors=errors)
            self.clock.advance(1)
            for controller in controllers or (self.controller,):
                self.check(controller)

    def state(self) -> RolloutState:
        state = self.store.read()
        assert state is not None
        return state

    def started(self) -> Rig:
        self.controller.apply("start", "alice")
        return self


def test_the_first_check_creates_a_pending_state_and_waits_for_start(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.traffic(12)
    state = rig.state()
    assert (state.phase, state.share, state.revision) == (Phase.PENDING, 0, 0)
    assert rig.controller.checks == 12 and rig.store.audit() == []


def test_a_due_step_with_passing_guards_advances(tmp_path: Path) -> None:
    rig = Rig(tmp_path).started()
    assert rig.state().share == 10 * PCT
    rig.clock.advance(2 * HOUR - 12)
    rig.traffic(12)
    state = rig.state()
    assert (state.phase, state.stage, state.share) == (Phase.RAMPING, 2, 20 * PCT)
    last = rig.store.audit()[-1]
    assert last["reason"] == "step to 20%" and last["actor"] == "controller"
    assert last["guards"]["v2-p95"]["verdict"] == "pass"


def test_a_due_step_holds_with_too_few_samples(tmp_path: Path) -> None:
    rig = Rig(tmp_path).started()
    rig.clock.advance(2 * HOUR)
    for _ in range(30):  # 2 v2 requests a second: 20 in the 10 s window, fewer than 50
        rig.envoy.serve("tts_v2", 2, latency_ms=40)
        rig.clock.advance(1)
        rig.check()
    state = rig.state()
    assert (state.stage, state.share, state.revision) == (1, 10 * PCT, 1)
    status = rig.controller.status()
    assert status["verdict"] == "hold" and status["next_step_in"] == 0.0
    assert status["guards"]["v2-p95"]["samples"] == 20


def test_a_latency_breach_rolls_back_at_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rig = Rig(tmp_path).started()
    rig.traffic(10)
    assert rig.state().phase is Phase.RAMPING
    with caplog.at_level(logging.WARNING, "extproc.rollout.controller"):
        rig.traffic(3, latency_ms=1200)  # 60 of 260 in the window are slow: p95 > 800 ms
    state = rig.state()
    assert (state.phase, state.share, state.resume_share) == (Phase.ROLLED_BACK, 0, 10 * PCT)
    last = rig.store.audit()[-1]
    assert last["reason"] == "guard breach: v2-p95" and last["to_phase"] == "rolled_back"
    assert last["guards"]["v2-p95"]["value"] > 0.8
    assert "rolled_back" in caplog.text and "v2-p95" in caplog.text


def test_an_error_breach_rolls_back(tmp_path: Path) -> None:
    rig = Rig(tmp_path).started()
    rig.traffic(10)
    rig.traffic(3, error_every=20)  # 1 in 20 = 5 %
    assert rig.state().phase is Phase.ROLLED_BACK
    assert rig.store.audit()[-1]["reason"] == "guard breach: v2-errors"


def test_a_paused_rollout_is_still_rolled_back_on_a_breach(tmp_path: Path) -> None:
    rig = Rig(tmp_path).started()
    rig.controller.apply("pause", "bob")
    rig.traffic(10, latency_ms=1200)
    assert rig.state().phase is Phase.ROLLED_BACK


def test_no_step_inside_a_freeze_window_and_a_breach_there_still_rolls_back(
    tmp_path: Path,
) -> None:
    morning = dt.datetime.fromisoformat("2026-11-25T05:00:00+01:00")
    rig = Rig(tmp_path, clock=FakeClock(morning)).started()  # next step due at 07:00
    rig.clock.advance(2 * HOUR + 60)  # 07:01, frozen until 09:30
    rig.traffic(60)
    assert (rig.state().stage, rig.state().share) == (1, 10 * PCT)
    assert rig.controller.status()["frozen_now"] is True
    rig.clock.set_now(dt.datetime.fromisoformat("2026-11-25T09:30:00+01:00"))
    rig.traffic(1)
    assert (rig.state().stage, rig.state().share) == (2, 20 * PCT)
    rig.clock.set_now(dt.datetime.fromisoformat("2026-11-25T19:00:00+01:00"))  # frozen again
    rig.traffic(3, latency_ms=1500)
    assert rig.state().phase is Phase.ROLLED_BACK


def test_the_doubling_cap_binds_a_small_initial_share(tmp_path: Path) -> None:
    rig = Rig(tmp_path, make_policy(initial="1%", freeze=False)).started()
    shares = [rig.state().share]
    for _ in range(5):
        rig.clock.advance(2 * HOUR - 10)
        rig.traffic(10)
        shares.append(rig.state().share)
    assert shares == [p * PCT for p in (1, 2, 4, 8, 16, 26)]


class StaleOnce(FileStateStore):
    """A view of the same store whose next read returns ``stale`` (what a controller read
    just before another one wrote)."""

    stale: RolloutState | None = None

    def read(self) -> RolloutState | None:
        if self.stale is not None:
            state, self.stale = self.stale, None
            return state
        return super().read()


def test_two_controllers_on_one_store_write_each_step_once(tmp_path: Path) -> None:
    rig = Rig(tmp_path).started()
    view = StaleOnce(rig.store.path)
    first, second = rig.controller, rig.make_controller(store=view)
    rig.clock.advance(2 * HOUR - 11)
    rig.traffic(10, controllers=(first, second))  # both have full windows; nothing due yet
    assert rig.state().revision == 1

    view.stale = rig.state()  # the second read before the first wrote
    rig.traffic(1, controllers=(first, second))  # the step is due: both decide it
    assert (first.conflicts, second.conflicts) == (0, 1)
    state = rig.state()
    assert (state.stage, state.share, state.revision) == (2, 20 * PCT, 2)
    audit = rig.store.audit(100)
    assert [e["revision"] for e in audit] == [1, 2]
    assert [e["reason"] for e in audit] == ["start", "step to 20%"]

    rig.traffic(3, controllers=(first, second))  # deciding again: nothing is due
    assert rig.state() == state and len(rig.store.audit(100)) == 2


def test_racing_writers_never_duplicate_a_revision(tmp_path: Path) -> None:
    """Two controllers' switches hammer one store from threads: every accepted write has
    its own revision, in order."""

    rig = Rig(tmp_path).started()
    controllers = [rig.controller, rig.make_controller()]

    def flip(controller: Controller) -> None:
        for _ in range(40):
            for action in ("pause", "resume"):
                with contextlib.suppress(TransitionError, Conflict):
                    controller.apply(action, "op")

    threads = [threading.Thread(target=flip, args=(c,)) for c in controllers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    revisions = [entry["revision"] for entry in rig.store.audit(10_000)]
    assert revisions == list(range(1, len(revisions) + 1))
    assert rig.state().revision == revisions[-1]


def test_a_restarted_controller_resumes_the_same_stage_and_share(tmp_path: Path) -> None:
    rig = Rig(tmp_path).started()
    rig.clock.advance(2 * HOUR - 12)
    rig.traffic(12)
    before = rig.state()
    assert (before.stage, before.share) == (2, 20 * PCT)

    restarted = rig.make_controller()  # new process: empty windows, same store
    rig.controller = restarted
    status = restarted.status()
    assert (status["phase"], status["stage"], status["share"]) == ("ramping", 2, "20%")
    assert status["next_step_in"] == pytest.approx(2 * HOUR)
    rig.traffic(12)
    assert rig.state() == before  # nothing due yet: untouched
    rig.clock.advance(2 * HOUR - 12)
    rig.traffic(12)
    assert (rig.state().stage, rig.state().share) == (3, 30 * PCT)


def test_a_state_of_another_rollout_is_left_alone(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.store.create(RolloutState("someone-else"))
    rig.traffic(3)
    assert rig.state() == RolloutState("someone-else")
    with pytest.raises(ValueError, match="state is for rollout 'someone-else'"):
        rig.controller.apply("start", "alice")


# ---- the switch ------------------------------------------------------------------------


def test_apply_runs_every_action_and_audits_its_actor(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    c = rig.controller
    assert c.apply("start", "alice").share == 10 * PCT
    assert c.apply("set-share", "bob", share=20 * PCT).share == 20 * PCT
    assert c.apply("pause", "carol").phase is Phase.PAUSED
    assert c.apply("rollback", "dave").phase is Phase.ROLLED_BACK
    resumed = c.apply("resume", "erin")
    assert (resumed.phase, resumed.share) == (Phase.RAMPING, 20 * PCT)
    assert c.apply("promote", "frank").share == BUCKETS
    audit = rig.store.audit()
    assert [e["actor"] for e in audit] == ["alice", "bob", "carol", "dave", "erin", "frank"]
    assert [e["revision"] for e in audit] == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize(
    ("action", "actor", "share", "error", "message"),
    [
        ("launch", "op", None, ValueError, "unknown action 'launch'; allowed: start, pause"),
        ("pause", " ", None, ValueError, "an actor"),
        ("pause", "op", 10, ValueError, "a share is required for set-share and only for it"),
        ("set-share", "op", None, ValueError, "a share is required for set-share"),
        ("set-share", "op", BUCKETS + 1, ValueError, "outside 0..10000"),
        ("set-share", "op", -1, ValueError, "outside 0..10000"),
        ("set-share", "op", 21 * PCT, ValueError, "more than doubles the current 10%; at most 20%"),
        ("start", "op", None, TransitionError, "cannot start a rollout that is ramping"),
        ("resume", "op", None, TransitionError, "cannot resume a rollout that is ramping"),
    ],
)
def test_a_bad_request_is_refused_clearly_and_changes_nothing(
    tmp_path: Path,
    action: str,
    actor: str,
    share: int | None,
    error: type[Exception],
    message: str,
) -> None:
    rig = Rig(tmp_path).started()
    before = (rig.store.path.read_bytes(), rig.store.audit_path.read_bytes())
    with pytest.raises(error, match=message.replace("(", r"\(").replace(".", r"\.")):
        rig.controller.apply(action, actor, share)
    assert (rig.store.path.read_bytes(), rig.store.audit_path.read_bytes()) == before


def test_a_share_from_zero_may_go_to_the_initial_share(tmp_path: Path) -> None:
    rig = Rig(tmp_path).started()
    rig.controller.apply("rollback", "op")
    assert rig.controller.apply("set-share", "op", share=10 * PCT).share == 10 * PCT


def test_apply_decides_again_when_it_loses_a_race(tmp_path: Path) -> None:
    rig = Rig(tmp_path).started()
    real_write = rig.store.write
    calls: list[int] = []

    def racing_write(change: sm.Change, expected_revision: int) -> None:
        if not calls:  # an operator gets in first
            calls.append(1)
            current = rig.store.read()
            assert current is not None
            real_write(sm.pause(current, rig.clock.now(), "mallory"), current.revision)
        real_write(change, expected_revision)

    rig.store.write = racing_write  # type: ignore[method-assign]
    with pytest.raises(TransitionError, match="cannot pause a rollout that is paused"):
        rig.controller.apply("pause", "op")
    assert rig.controller.conflicts == 1
    assert rig.controller.apply("resume", "op").phase is Phase.RAMPING


def test_status_shows_the_rollout_for_an_operator(tmp_path: Path) -> None:
    rig = Rig(tmp_path).started()
    rig.traffic(5)
    status = rig.controller.status(transitions=5)
    assert status["rollout"] == "gpt-sovits-v2"
    assert (status["phase"], status["stage"], status["share"], status["revision"]) == (
        "ramping",
        1,
        "10%",
        1,
    )
    assert status["next_share"] == "20%" and status["frozen_now"] is False
    assert status["next_step_in"] == pytest.approx(2 * HOUR - 5)
    assert status["verdict"] == "pass" and set(status["guards"]) == {"v2-p95", "v2-errors"}
    assert status["guards"]["v2-errors"]["samples"] == 80  # the first second is the baseline
    assert [t["actor"] for t in status["transitions"]] == ["alice"]
    assert status["checks"] == 5


def test_run_checks_every_interval_until_asked_to_stop(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    controller = rig.controller
    source = controller.sources["envoy"]
    refreshes = []
    real_refresh = source.refresh

    async def counting_refresh() -> None:
        refreshes.append(rig.clock.monotonic())
        if len(refreshes) == 5:
            controller.request_stop()
        await real_refresh()

    source.refresh = counting_refresh  # type: ignore[method-assign]
    asyncio.run(controller.run())
    assert controller.checks == 5
    assert refreshes == [0.0, 1.0, 2.0, 3.0, 4.0]  # the fake clock's sleep advances it


def test_a_guard_without_a_source_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no source for envoy guards"):
        Controller(make_policy(), FileStateStore(tmp_path / "s.json"), {})
