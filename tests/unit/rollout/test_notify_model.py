"""The pure parts of notifications: the policy section, the event kinds, the payloads of each
sink, the webhook signature and the secrets read at start-up."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from extproc.rollout import state as machine
from extproc.rollout.notify import events, payloads, signing
from extproc.rollout.notify.config import EVENT_KINDS
from extproc.rollout.notify.events import Event, from_transition, kind_of
from extproc.rollout.notify.secrets import resolve
from extproc.rollout.notify.sinks import build_sinks
from extproc.rollout.policy import Policy, parse_policy
from extproc.rollout.state import RolloutState, Verdict

POLICY = b"""policy:
  rollout: gpt-sovits-v2
  initial_share: 10%
  step: 10%
  notify:
    - name: ops-webhook
      type: webhook
      url: http://127.0.0.1:8080/hook
      secret: {env: TTS_NOTIFY_KEY}
    - name: team-slack
      type: slack
      url: {file: /run/secrets/slack-url}
      events: [rollback, promote]
    - name: am
      type: alertmanager
      url: http://127.0.0.1:9093/
      severity: ticket
      labels: {team: tts}
      timeout: 500ms
      attempts: 3
"""
BREACH = {
    "v2-p95": {"verdict": "fail", "value": 1.02, "threshold": 0.8, "samples": 40},
    "v2-errors": {"verdict": "pass", "value": 0.0, "threshold": 0.005, "samples": 300},
}


def policy() -> Policy:
    return parse_policy("policy.yaml", POLICY)


def test_the_notify_section_parses_with_its_defaults() -> None:
    webhook, slack, am = policy().notify
    assert (webhook.type, webhook.url.value) == ("webhook", "http://127.0.0.1:8080/hook")
    assert webhook.secret is not None and webhook.secret.env == "TTS_NOTIFY_KEY"
    assert webhook.secret.where == "policy.yaml:9: policy.notify[0].secret"
    assert webhook.events == frozenset(EVENT_KINDS) and (webhook.timeout, webhook.attempts) == (
        2.0,
        5,
    )
    assert slack.url.file == "/run/secrets/slack-url" and not slack.url.value
    assert slack.events == {"rollback", "promote"}
    assert (am.severity, am.labels, am.timeout, am.attempts) == (
        "ticket",
        (("team", "tts"),),
        0.5,
        3,
    )


def test_a_policy_without_notify_has_no_sinks() -> None:
    plain = parse_policy("p.yaml", b"policy: {rollout: r, initial_share: 10%}\n")
    assert plain.notify == ()


def walk() -> list[Event]:
    """Every transition of a rollout's life, as events."""
    p, now = policy(), 1_765_000_000.0
    s = RolloutState(rollout=p.rollout)
    out = []

    def take(change: machine.Change | None) -> None:
        nonlocal s
        assert change is not None
        s = change[0]
        out.append(from_transition(change[1], "host:1"))

    take(machine.start(s, p, now, "alice"))
    take(machine.tick(s, p, now + 7200, Verdict.PASS, {}))
    take(machine.pause(s, now + 7300, "bob"))
    take(machine.tick(s, p, now + 7400, Verdict.FAIL, BREACH))
    take(machine.resume(s, p, now + 7500, "carol"))
    take(machine.set_share(s, 3000, now + 7600, "carol"))
    take(machine.promote(s, now + 7700, "dave"))
    return out


def test_every_transition_has_its_kind() -> None:
    kinds = [e.kind for e in walk()]
    assert kinds == ["start", "step", "pause", "rollback", "resume", "step", "promote"]
    assert kind_of("ramping", "completed", "ramp complete") == "completed"
    assert kind_of("rolled_back", "ramping", "resume") == "resume"


def test_a_rollback_event_carries_the_guard_figures_and_who_and_why() -> None:
    rollback = walk()[3]
    assert rollback.id == "gpt-sovits-v2/r4/rollback"
    assert (rollback.from_phase, rollback.to_phase) == ("paused", "rolled_back")
    assert (rollback.from_share, rollback.to_share) == ("20%", "0%")
    assert (rollback.actor, rollback.reason) == ("controller", "guard breach: v2-p95")
    assert rollback.breached() == ["v2-p95"]
    assert events.guard_summary(rollback) == "v2-p95 fail 1.02 (threshold 0.8, n=40)"
    body = payloads.webhook_body(rollback)
    assert body["schema"] == events.SCHEMA and body["guards"] == BREACH
    assert body["time"] == events.iso_time(rollback.at) and body["time"].endswith("Z")
    assert json.loads(json.dumps(body)) == body


def test_slack_gets_text_and_blocks_with_the_figures_of_a_rollback() -> None:
    rollback = walk()[3]
    body = payloads.slack_body(rollback)
    assert body["text"].startswith(":rotating_light: gpt-sovits-v2 ROLLED BACK: 20% → 0%")
    types = [b["type"] for b in body["blocks"]]
    assert types == ["header", "section", "section", "context"]
    assert "v2-p95 fail 1.02" in body["blocks"][2]["text"]["text"]
    step = payloads.slack_body(walk()[1])
    assert [b["type"] for b in step["blocks"]] == ["header", "section", "context"]
    pause = walk()[2]
    sly = payloads.slack_body(dataclasses.replace(pause, actor="<!channel> & co"))
    assert "&lt;!channel&gt; &amp; co" in sly["blocks"][-1]["elements"][0]["text"]
    assert "<!channel>" not in json.dumps(sly)


def test_alertmanager_gets_a_firing_rollback_alert_and_its_resolve_on_resume() -> None:
    all_events = walk()
    (alert,) = payloads.alertmanager_alerts(all_events[3], "page", (("team", "tts"),))
    assert alert["labels"] == {
        "alertname": "TtsCanaryRollback",
        "rollout": "gpt-sovits-v2",
        "severity": "page",
        "team": "tts",
    }
    assert alert["annotations"]["guards"] == "v2-p95 fail 1.02 (threshold 0.8, n=40)"
    assert alert["startsAt"] < alert["endsAt"]  # firing for ROLLBACK_HOLD
    info, resolved = payloads.alertmanager_alerts(all_events[4], "page")
    assert info["labels"]["alertname"] == "TtsCanaryTransition"
    assert (info["labels"]["severity"], info["labels"]["event"]) == ("info", "resume")
    assert resolved["labels"]["alertname"] == "TtsCanaryRollback"
    assert resolved["startsAt"] == resolved["endsAt"]  # ends now: resolved


def test_a_signature_verifies_and_any_change_or_a_stale_time_breaks_it() -> None:
    key, body, t = b"k" * 32, b'{"kind":"rollback"}', 1_765_000_000
    header = signing.sign(key, t, body)
    assert header.startswith(f"t={t},v1=") and len(header.split("v1=")[1]) == 64
    assert signing.verify(key, header, body, now=t + 10)
    assert not signing.verify(key, header, body + b" ", now=t)
    assert not signing.verify(b"other", header, body, now=t)
    assert not signing.verify(key, header, body, now=t + signing.DEFAULT_TOLERANCE + 1)
    assert not signing.verify(key, header.replace(f"t={t}", f"t={t + 1}"), body, now=t)
    assert not signing.verify(key, "garbage", body, now=t)


def test_the_webhook_request_is_signed_and_names_the_event() -> None:
    webhook = build_sinks(policy().notify[:1], {"TTS_NOTIFY_KEY": "s3cret"})[0]
    am = build_sinks(policy().notify[2:], {})[0]
    rollback = walk()[3]
    request = webhook.request(rollback, 1_765_000_123.9)
    assert request.url == "http://127.0.0.1:8080/hook"
    assert request.headers["X-TTS-Canary-Delivery"] == "gpt-sovits-v2/r4/rollback"
    assert request.headers["X-TTS-Canary-Event"] == "rollback"
    header = request.headers[signing.HEADER]
    assert header.startswith("t=1765000123,")
    assert signing.verify(b"s3cret", header, request.body, now=1_765_000_124)
    assert json.loads(request.body)["id"] == rollback.id
    assert am.url == "http://127.0.0.1:9093/api/v2/alerts"


def test_secrets_come_from_the_environment_or_a_file_and_are_never_echoed(
    tmp_path: Path,
) -> None:
    webhook, slack, _ = policy().notify
    assert webhook.secret is not None
    with pytest.raises(ValueError) as missing:
        resolve(webhook.secret, {})
    assert str(missing.value) == (
        "policy.yaml:9: policy.notify[0].secret: environment variable TTS_NOTIFY_KEY "
        "is not set or empty"
    )
    url_file = tmp_path / "slack-url"
    url_file.write_text("https://hooks.example.com/T/B/abc\n")
    moved = type(slack.url)(slack.url.where, file=str(url_file))
    assert resolve(moved) == "https://hooks.example.com/T/B/abc"
    url_file.write_text("not a url\n")
    moved_spec = type(slack)(slack.name, slack.type, moved)
    with pytest.raises(ValueError) as bad:
        build_sinks((moved_spec,))
    assert "does not hold an http:// or https:// URL" in str(bad.value)
    assert "not a url" not in str(bad.value)
    with pytest.raises(ValueError, match=r"policy.notify\[1\].url: cannot read /run/secrets"):
        build_sinks((slack,))
