"""What each kind of sink receives for an event: pure renderers, JSON-ready values out.

- ``webhook_body``: the event itself (schema tts-canary.notification/v1).
- ``slack_body``: ``text`` (the fallback line, also what notifications show) and Block Kit
  ``blocks`` (header, the transition, the guard figures of a rollback, the actor).
- ``alertmanager_alerts``: the list Alertmanager's ``POST /api/v2/alerts`` takes. A rollback
  is a firing ``TtsCanaryRollback`` alert (severity from the sink, default page) that stays
  active for ROLLBACK_HOLD unless a later resume or promote resolves it (same labels,
  ``endsAt`` now). Every other event is a short ``TtsCanaryTransition`` alert (severity
  info, label ``event``) that ends after INFO_HOLD, so routing can send it to a chat
  receiver and ignore it elsewhere.
"""

from __future__ import annotations

from typing import Any

from extproc.rollout.notify.events import Event, guard_summary, iso_time

ROLLBACK_ALERT = "TtsCanaryRollback"
TRANSITION_ALERT = "TtsCanaryTransition"
ROLLBACK_HOLD = 24 * 3600.0  # seconds a rollback alert stays firing without a resolve
INFO_HOLD = 600.0  # seconds a transition alert stays active
_SLACK_HEADER_MAX = 150  # Block Kit's limit for a header's plain text


def headline(event: Event) -> str:
    """One line for people: 'gpt-sovits-v2 ROLLED BACK: 20% → 0% (guard breach: v2-p95)'."""
    verb = {
        "start": "started",
        "step": "stepped",
        "pause": "paused",
        "resume": "resumed",
        "rollback": "ROLLED BACK",
        "promote": "promoted",
        "completed": "completed",
        "leadership": "has a new controller leader",
    }[event.kind]
    shares = f"{event.from_share} → {event.to_share}"
    if event.kind == "leadership":
        return f"{event.rollout} {verb}: {event.actor} ({event.to_phase}, {event.to_share})"
    return f"{event.rollout} {verb}: {shares} ({event.reason})"


def webhook_body(event: Event) -> dict[str, Any]:
    return event.to_json()


def slack_body(event: Event) -> dict[str, Any]:
    """Operators' words (actor, reason) are escaped: no mention or link can ride in them."""
    text = headline(event)
    icon = ":rotating_light:" if event.kind == "rollback" else ":information_source:"
    details = (
        f"*Phase* {event.from_phase} → {event.to_phase}   *Share (v2)* {event.from_share} → "
        f"{event.to_share}   *Stage* {event.stage}   *Revision* {event.revision}"
    )
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": text[:_SLACK_HEADER_MAX]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": f"{icon} {details}"}},
    ]
    figures = guard_summary(event)
    if event.kind == "rollback" and figures:
        blocks.append(
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*Guards* {figures}"}}
        )
    context = _slack_escape(f"by {event.actor} at {iso_time(event.at)}: {event.reason}")
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": context}]})
    return {"text": f"{icon} {_slack_escape(text)}", "blocks": blocks}


def _slack_escape(text: str) -> str:
    """Slack's three control characters in message text."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def alertmanager_alerts(
    event: Event, severity: str = "page", labels: tuple[tuple[str, str], ...] = ()
) -> list[dict[str, Any]]:
    extra = dict(labels)
    annotations = {
        "summary": headline(event),
        "description": (
            f"{event.rollout} r{event.revision}: {event.from_phase} -> {event.to_phase}, v2 share "
            f"{event.from_share} -> {event.to_share}, stage {event.stage}, by {event.actor}: "
            f"{event.reason}"
        ),
        "revision": str(event.revision),
        "actor": event.actor,
        "reason": event.reason,
        "event_id": event.id,
    }
    if event.kind == "rollback":
        annotations["guards"] = guard_summary(event)
        rollback_labels = {**extra, "alertname": ROLLBACK_ALERT, "rollout": event.rollout}
        rollback_labels["severity"] = severity
        return [_alert(rollback_labels, annotations, event.at, event.at + ROLLBACK_HOLD)]
    info = {**extra, "alertname": TRANSITION_ALERT, "rollout": event.rollout}
    info.update(severity="info", event=event.kind)
    alerts = [_alert(info, annotations, event.at, event.at + INFO_HOLD)]
    if event.from_phase == "rolled_back" and event.to_phase != "rolled_back":
        resolved = {**extra, "alertname": ROLLBACK_ALERT, "rollout": event.rollout}
        resolved["severity"] = severity
        alerts.append(_alert(resolved, annotations, event.at, event.at))
    return alerts


def _alert(
    labels: dict[str, str], annotations: dict[str, str], starts: float, ends: float
) -> dict[str, Any]:
    return {
        "labels": labels,
        "annotations": annotations,
        "startsAt": iso_time(starts),
        "endsAt": iso_time(ends),
    }
