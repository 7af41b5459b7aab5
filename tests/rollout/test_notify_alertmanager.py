"""A real Alertmanager (loopback, temp config and storage, stopped by PID) receives the
controller's alerts: a rollback is a firing TtsCanaryRollback alert that its API lists with
the rollout's labels and the reason, that the team's route delivers at once, and that a
resume resolves. Without the Debian package: skipped (failed under CI)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from extproc.rollout.clock import SystemClock
from extproc.rollout.controller import Controller
from extproc.rollout.notify.notifier import Notifier
from extproc.rollout.notify.sinks import build_sinks
from extproc.rollout.policy import parse_policy
from extproc.rollout.stores.state_store import FileStateStore
from extproc.stack.processes import wait_until
from tests.support.alertmanager import Alertmanager
from tests.support.notify_receiver import Receiver


def controller_for(tmp_path: Path, alertmanager_url: str) -> Controller:
    the_policy = parse_policy(
        "policy.yaml",
        f"""policy:
  rollout: gpt-sovits-v2
  initial_share: 10%
  notify:
    - name: alertmanager
      type: alertmanager
      url: {alertmanager_url}
      labels: {{team: tts}}
""".encode(),
    )
    notifier = Notifier(build_sinks(the_policy.notify), identity="test:1", backoff=(0.05, 0.2))

    store = FileStateStore(tmp_path / "state.json")
    return Controller(the_policy, store, {}, clock=SystemClock(), notifier=notifier)


def named(alerts: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [a for a in alerts if a["labels"]["alertname"] == name]


def routed(receiver: Receiver, name: str, status: str) -> bool:
    """Alertmanager's webhook (the team's route) delivered ``name`` with ``status``."""
    return any(
        r.json()["status"] == status
        and any(a["labels"]["alertname"] == name for a in r.json()["alerts"])
        for r in receiver.delivered()
    )


def test_a_rollback_fires_an_alert_that_routes_and_a_resume_resolves_it(tmp_path: Path) -> None:
    with Receiver() as team, Alertmanager(tmp_path / "am", team.url + "/alerts") as am:
        controller = controller_for(tmp_path, am.url)
        assert isinstance(controller.notifier, Notifier)
        with controller.notifier.running():
            controller.apply("start", "alice")
            wait_until(
                lambda: bool(named(am.alerts(), "TtsCanaryTransition")), "the start alert", 15
            )
            controller.apply("rollback", "bob")
            wait_until(
                lambda: bool(named(am.alerts(), "TtsCanaryRollback")), "the rollback alert", 15
            )
            (alert,) = named(am.alerts(), "TtsCanaryRollback")
            wait_until(lambda: routed(team, "TtsCanaryRollback", "firing"), "the route", 15)
            controller.apply("resume", "carol")
            wait_until(
                lambda: not named(am.alerts(), "TtsCanaryRollback"), "the rollback resolved", 15
            )
            wait_until(lambda: routed(team, "TtsCanaryRollback", "resolved"), "the resolve", 15)
    assert alert["labels"] == {
        "alertname": "TtsCanaryRollback",
        "rollout": "gpt-sovits-v2",
        "severity": "page",
        "team": "tts",
    }
    assert alert["status"]["state"] == "active"
    notes = alert["annotations"]
    assert notes["reason"] == "rollback" and notes["actor"] == "bob"
    assert notes["event_id"] == "gpt-sovits-v2/r2/rollback"
    assert notes["summary"] == "gpt-sovits-v2 ROLLED BACK: 10% → 0% (rollback)"
    assert alert["startsAt"] < alert["endsAt"]
    info = controller.notifier.metrics.value(
        "tts_canary_notifications_total", sink="alertmanager", outcome="delivered"
    )
    assert info == 3
