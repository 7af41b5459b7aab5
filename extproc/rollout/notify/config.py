"""The ``policy.notify`` section: strict YAML in, frozen sink specs out (no I/O here).

```yaml
  notify:
    - name: ops-webhook
      type: webhook                     # JSON body, signed: X-TTS-Canary-Signature
      url: https://hooks.example.com/tts
      secret: {env: TTS_CANARY_WEBHOOK_KEY}   # the HMAC-SHA256 key: env or file only
    - name: team-slack
      type: slack                       # Slack-compatible incoming webhook
      url: {file: /var/run/secrets/slack/url} # the URL is the secret: env or file only
      events: [rollback, promote, completed]
    - name: alertmanager
      type: alertmanager                # POST <url>/api/v2/alerts
      url: http://alertmanager:9093
      severity: page                    # of the rollback alert (default page)
      labels: {team: tts}               # added to every alert
      timeout: 2s                       # per attempt (default 2s)
      attempts: 5                       # before giving up (default 5, at most 20)
```

Secrets are never inline: a webhook's ``secret`` and a Slack ``url`` must be ``{env: NAME}``
or ``{file: PATH}``; they are read when the controller starts (see secrets.py), and a
missing one stops it with the same ``file:line: field.path:`` form as a parse error.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar
from urllib.parse import urlsplit

from yaml.nodes import MappingNode, Node, ScalarNode

from extproc.core.fields import Reader
from extproc.core.yaml_source import line_of

SINK_TYPES = ("webhook", "slack", "alertmanager")
EVENT_KINDS = ("start", "step", "pause", "resume", "rollback", "promote", "completed", "leadership")
SEVERITIES = ("page", "ticket", "critical", "warning", "info")
DEFAULT_TIMEOUT = 2.0
DEFAULT_ATTEMPTS = 5
MAX_ATTEMPTS = 20
MAX_TIMEOUT = 30.0
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s)")
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]{0,62}")
_ENV = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_RESERVED_LABELS = ("alertname", "rollout", "severity", "event")
_KEYS = ("name", "type", "url", "secret", "events", "timeout", "attempts", "severity", "labels")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class SecretRef:
    """Where a secret (or a plain value) comes from: exactly one of env, file, value.
    ``where`` is ``file:line: field.path`` for messages about it at start-up."""

    where: str
    env: str = ""
    file: str = ""
    value: str = ""  # only for values that are not secret (an Alertmanager URL)


@dataclass(frozen=True, slots=True)
class SinkSpec:
    name: str
    type: str  # one of SINK_TYPES
    url: SecretRef
    secret: SecretRef | None = None  # webhook only: the HMAC key
    events: frozenset[str] = frozenset(EVENT_KINDS)
    timeout: float = DEFAULT_TIMEOUT  # seconds per attempt
    attempts: int = DEFAULT_ATTEMPTS
    severity: str = "page"  # alertmanager: the rollback alert's severity label
    labels: tuple[tuple[str, str], ...] = field(default=())  # alertmanager: extra labels


def parse_notify(r: Reader, node: Node | None, path: str = "policy.notify") -> tuple[SinkSpec, ...]:
    """The sinks of ``policy.notify`` (none when the key is absent); RulesError located at
    the offending node otherwise."""
    if node is None:
        return ()
    taken: set[str] = set()
    return tuple(
        _sink(r, item, f"{path}[{i}]", taken) for i, item in enumerate(r.sequence(node, path))
    )


def _sink(r: Reader, item: Node, at: str, taken: set[str]) -> SinkSpec:
    m = r.mapping(item, at, _KEYS, ("name", "type", "url"))
    name = r.string(m["name"], f"{at}.name", pattern=_NAME)
    if name in taken:
        r.fail(m["name"], f"{at}.name", f"duplicate sink name {name!r}")
    taken.add(name)
    kind = r.string(m["type"], f"{at}.type")
    if kind not in SINK_TYPES:
        allowed = ", ".join(SINK_TYPES)
        r.fail(m["type"], f"{at}.type", f"{kind!r} is not a sink; allowed: {allowed}")
    url = _source(r, m["url"], f"{at}.url", inline_ok=kind != "slack")
    if kind == "webhook" and "secret" not in m:
        r.fail(item, at, "a webhook needs 'secret' (the HMAC key): {env: NAME} or {file: PATH}")
    if kind != "webhook" and "secret" in m:
        r.fail(m["secret"], f"{at}.secret", "only a webhook sink is signed")
    for key in ("severity", "labels"):
        if key in m and kind != "alertmanager":
            r.fail(m[key], f"{at}.{key}", "only for an alertmanager sink")

    def optional(key: str, read: Callable[[Reader, Node, str], T], default: T) -> T:
        return read(r, m[key], f"{at}.{key}") if key in m else default

    return SinkSpec(
        name=name,
        type=kind,
        url=url,
        secret=_source(r, m["secret"], f"{at}.secret", inline_ok=False) if "secret" in m else None,
        events=optional("events", _events, frozenset(EVENT_KINDS)),
        timeout=optional("timeout", _timeout, DEFAULT_TIMEOUT),
        attempts=optional("attempts", _attempts, DEFAULT_ATTEMPTS),
        severity=optional("severity", _severity, "page"),
        labels=optional("labels", _labels, ()),
    )


def _attempts(r: Reader, node: Node, path: str) -> int:
    return r.integer(node, path, 1, MAX_ATTEMPTS)


def _source(r: Reader, node: Node, path: str, *, inline_ok: bool) -> SecretRef:
    where = f"{r.file}:{line_of(node)}: {path}"
    if not isinstance(node, MappingNode):
        if not inline_ok:
            r.fail(node, path, "a secret is never inline: write {env: NAME} or {file: PATH}")
        return SecretRef(where, value=check_url(r, node, path, r.string(node, path)))
    m = r.mapping(node, path, ("env", "file"))
    if len(m) != 1:
        r.fail(node, path, "exactly one of 'env' or 'file'")
    if "env" in m:
        return SecretRef(where, env=r.string(m["env"], f"{path}.env", pattern=_ENV))
    return SecretRef(where, file=r.string(m["file"], f"{path}.file"))


def check_url(r: Reader | None, node: Node | None, path: str, text: str) -> str:
    """An http(s) URL with a host; the error names the field (``r`` None: ValueError)."""
    parts = urlsplit(text.strip())
    if parts.scheme in ("http", "https") and parts.hostname:
        return text.strip()
    message = "is not an http:// or https:// URL with a host"
    if r is not None and node is not None:
        r.fail(node, path, f"{text!r} {message}")  # inline, hence not a secret
    raise ValueError(f"{path}: the value {message}")


def _timeout(r: Reader, node: Node, path: str) -> float:
    """'500ms', '2s' -> seconds, above 0 and at most MAX_TIMEOUT."""
    text = str(node.value) if isinstance(node, ScalarNode) else r.string(node, path)
    match = _DURATION.fullmatch(text.strip())
    if not match:
        r.fail(node, path, f"{text!r} is not a duration like 500ms or 2s")
    seconds = float(match.group(1)) * (0.001 if match.group(2) == "ms" else 1.0)
    if not 0 < seconds <= MAX_TIMEOUT:
        r.fail(node, path, f"{text!r} is out of range; allowed above 0 up to {MAX_TIMEOUT:g}s")
    return seconds


def _events(r: Reader, node: Node, path: str) -> frozenset[str]:
    chosen = r.strings(node, path, allow_scalar=True)
    for i, kind in enumerate(chosen):
        if kind not in EVENT_KINDS:
            r.fail(
                r.sequence(node, path, allow_scalar=True)[i],
                f"{path}[{i}]",
                f"{kind!r} is not an event; allowed: {', '.join(EVENT_KINDS)}",
            )
    return frozenset(chosen)


def _severity(r: Reader, node: Node, path: str) -> str:
    value = r.string(node, path)
    if value not in SEVERITIES:
        r.fail(node, path, f"{value!r} is not a severity; allowed: {', '.join(SEVERITIES)}")
    return value


def _labels(r: Reader, node: Node, path: str) -> tuple[tuple[str, str], ...]:
    if not isinstance(node, MappingNode):
        r.fail(node, path, "expected a mapping of label names to values")
    out = []
    for key, value in node.value:
        name = r.string(key, path, pattern=_LABEL)
        if name in _RESERVED_LABELS:
            r.fail(
                key, f"{path}.{name}", f"set by the sink; reserved: {', '.join(_RESERVED_LABELS)}"
            )
        out.append((name, r.string(value, f"{path}.{name}")))
    return tuple(sorted(out))
