"""The controller's notification hook: every transition it writes reaches the listener once,
after the write, with the guard figures of a breach; refused changes and lost races do not."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from extproc.rollout.notify import events
from extproc.rollout.notify.notifier import Notifier
from extproc.rollout.state import Phase, Transition, TransitionError
from tests.unit.rollout.test_rollout_controller import Rig


class Recorder:
    def __init__(self, rig: Rig) -> None:
        self.rig = rig
        self.heard: list[Transition] = []
        self.stored_phase: list[Phase] = []

    def transition(self, transition: Transition) -> None:
        self.heard.append(transition)
        self.stored_phase.append(self.rig.state().phase)  # the write came first


def rig_with_recorder(tmp_path: Path) -> tuple[Rig, Recorder]:
    rig = Rig(tmp_path)
    recorder = Recorder(rig)
    rig.controller.notifier = recorder
    return rig, recorder


def test_each_written_transition_is_heard_once_after_the_write(tmp_path: Path) -> None:
    rig, recorder = rig_with_recorder(tmp_path)
    rig.controller.apply("start", "alice")
    rig.traffic(10)
    rig.traffic(3, latency_ms=1200)  # a breach: the controller rolls back
    rig.controller.apply("resume", "carol")
    kinds = [events.from_transition(t).kind for t in recorder.heard]
    assert kinds == ["start", "rollback", "resume"]
    assert [t.revision for t in recorder.heard] == [1, 2, 3]
    assert recorder.stored_phase == [Phase.RAMPING, Phase.ROLLED_BACK, Phase.RAMPING]
    rollback = events.from_transition(recorder.heard[1])
    assert rollback.actor == "controller" and rollback.reason == "guard breach: v2-p95"
    figures: dict[str, Any] = rollback.guards["v2-p95"]
    assert figures["verdict"] == "fail" and figures["value"] > 0.8


def test_a_refused_change_is_not_heard(tmp_path: Path) -> None:
    rig, recorder = rig_with_recorder(tmp_path)
    with pytest.raises(TransitionError):
        rig.controller.apply("pause", "bob")  # pending cannot pause
    rig.traffic(5)  # checks that change nothing
    assert recorder.heard == []


def test_the_notifier_hook_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    """A notification bug must not break the controller: it is logged, not raised."""
    notifier = Notifier(())

    class Broken:
        revision = 9

    notifier.transition(Broken())  # type: ignore[arg-type]
    assert "could not announce revision 9" in caplog.text
