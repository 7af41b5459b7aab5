"""A sink: a spec with its secrets read, turning an event into one HTTP request.

``build_sinks(specs)`` reads every secret the specs name (ValueError, located, if one is
missing); ``Sink.request(event, now)`` renders the request for one attempt. The webhook is
signed anew on each attempt, so that a retry after a back-off carries a fresh timestamp.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from extproc.rollout.notify import payloads, signing
from extproc.rollout.notify.config import SinkSpec
from extproc.rollout.notify.events import Event
from extproc.rollout.notify.secrets import resolve, resolve_url

ALERTS_PATH = "/api/v2/alerts"
USER_AGENT = "tts-canary-notify/1"


@dataclass(frozen=True, slots=True)
class Request:
    url: str
    body: bytes
    headers: dict[str, str]


@dataclass(frozen=True, slots=True)
class Sink:
    spec: SinkSpec
    url: str  # resolved; for alertmanager the full /api/v2/alerts URL
    key: bytes = b""  # webhook: the HMAC key

    @property
    def name(self) -> str:
        return self.spec.name

    def wants(self, event: Event) -> bool:
        return event.kind in self.spec.events

    def request(self, event: Event, now: float) -> Request:
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
        kind = self.spec.type
        if kind == "webhook":
            body = _json(payloads.webhook_body(event))
            headers["X-TTS-Canary-Event"] = event.kind
            headers["X-TTS-Canary-Delivery"] = event.id
            headers[signing.HEADER] = signing.sign(self.key, int(now), body)
        elif kind == "slack":
            body = _json(payloads.slack_body(event))
        else:
            alerts = payloads.alertmanager_alerts(event, self.spec.severity, self.spec.labels)
            body = _json(alerts)
        return Request(self.url, body, headers)


def build_sinks(
    specs: tuple[SinkSpec, ...], environ: Mapping[str, str] | None = None
) -> tuple[Sink, ...]:
    """Sinks with their secrets read now (ValueError naming file:line: field if one is not
    there; the value itself is never in the message)."""
    sinks = []
    for spec in specs:
        url = resolve_url(spec.url, environ)
        if spec.type == "alertmanager":
            url = url.rstrip("/") + ALERTS_PATH
        key = resolve(spec.secret, environ).encode() if spec.secret is not None else b""
        sinks.append(Sink(spec, url, key))
    return tuple(sinks)


def _json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()
