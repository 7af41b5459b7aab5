"""``extproc rollout controller`` with a ``notify:`` section: secrets are read at start-up
(a missing one exits 2 naming file, line and field, never the value), the controller gets
its notifier, and ``--metrics`` refuses a bad address."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from extproc.rollout import controller_command as command
from extproc.rollout.notify.notifier import Notifier
from tests.unit.rollout.test_rollout_controller_command import POLICY, parse

SINKS = """  notify:
    - name: ops
      type: webhook
      url: http://127.0.0.1:9/hook
      secret: {env: TTS_UNIT_NOTIFY_KEY}
"""


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY + SINKS)
    return policy, tmp_path / "state.json"


def test_a_missing_secret_stops_the_controller_with_a_located_error(
    files: tuple[Path, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    policy, state = files
    monkeypatch.delenv("TTS_UNIT_NOTIFY_KEY", raising=False)
    assert command.run(parse("--policy", str(policy), "--state", str(state))) == 2
    err = capsys.readouterr().err
    assert (
        f"{policy}:11: policy.notify[0].secret: environment variable TTS_UNIT_NOTIFY_KEY "
        "is not set or empty"
    ) in err


def test_the_controller_gets_a_notifier_for_the_policy_sinks(
    files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    policy, state = files
    monkeypatch.setenv("TTS_UNIT_NOTIFY_KEY", "k" * 32)
    controller = command.build_controller(parse("--policy", str(policy), "--state", str(state)))
    notifier = controller.notifier
    assert isinstance(notifier, Notifier)
    assert [w.sink.name for w in notifier.workers] == ["ops"]
    assert notifier.workers[0].sink.key == b"k" * 32
    assert notifier.identity.endswith(f":{os.getpid()}")


def test_without_sinks_there_is_no_notifier(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    args = parse("--policy", str(policy), "--state", str(tmp_path / "state.json"))
    assert command.build_controller(args).notifier is None
