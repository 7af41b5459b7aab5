"""Limits of the built-in HTTP/2 server against broken or hostile peers (pure data).

Every limit is a setting: an environment variable ``EXTPROC_H2_<FIELD>`` with the
default beside it (``LIMIT_SETTINGS``), shown by ``extproc serve --help`` and
described in docs/http2-hardening.md. A flood limit is a token bucket written
``BURST,PER_SECOND``: a peer may send BURST such frames at once and PER_SECOND
more each second; one more and the connection ends with GOAWAY ENHANCE_YOUR_CALM.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass

KiB, MiB = 1 << 10, 1 << 20


@dataclass(frozen=True, slots=True)
class Flood:
    """A token bucket: ``burst`` frames at once, refilled at ``per_second``."""

    burst: int
    per_second: float

    def text(self) -> str:
        return f"{self.burst},{self.per_second:g}"


@dataclass(frozen=True, slots=True)
class H2Limits:
    """What one connection (and the server) may cost; defaults are safe for Envoy."""

    max_connections: int = 256
    backlog: int = 1024
    max_concurrent_streams: int = 1000
    stream_window: int = 1 * MiB
    connection_window: int = 2 * MiB
    max_message: int = 4 * MiB
    max_buffered: int = 4 * MiB
    max_header_list: int = 16 * KiB
    max_continuations: int = 16
    retained_headers: int = 256 * KiB
    write_high_water: int = 256 * KiB
    work_per_pass: int = 1024
    handshake_timeout: float = 10.0
    idle_timeout: float = 300.0
    warn_every: float = 10.0
    ping_flood: Flood = Flood(1000, 100)
    settings_flood: Flood = Flood(100, 10)
    reset_flood: Flood = Flood(1000, 200)
    empty_flood: Flood = Flood(1000, 200)
    window_update_flood: Flood = Flood(10_000, 5000)

    def connection_budget(self) -> int:
        """Bytes one connection may hold at most (see docs/http2-hardening.md)."""
        return (
            self.max_buffered
            + self.connection_window  # what the peer may still send unread
            + 2 * self.max_header_list  # a header block being gathered and its decoding
            + self.retained_headers
            + self.write_high_water
            + 256 * KiB  # one read of input plus per-stream bookkeeping
            + 64 * 5 * KiB  # the header-block cache
        )


#: (field, help) in the order ``--help`` lists them.
_HELP: dict[str, str] = {
    "max_connections": "open connections at most; more are closed at once",
    "backlog": "listen backlog (pending connects)",
    "max_concurrent_streams": "open streams per connection (SETTINGS_MAX_CONCURRENT_STREAMS)",
    "stream_window": "receive window per stream, bytes",
    "connection_window": "receive window per connection, bytes",
    "max_message": "largest request message, bytes (RESOURCE_EXHAUSTED above)",
    "max_buffered": "request bytes one connection may hold unprocessed before credit stops",
    "max_header_list": "largest header block, compressed or decoded, bytes"
    " (SETTINGS_MAX_HEADER_LIST_SIZE)",
    "max_continuations": "CONTINUATION frames per header block",
    "retained_headers": "decoded metadata bytes kept for the open streams of one connection",
    "write_high_water": "queued output bytes above which the connection stops reading",
    "work_per_pass": "frames (a request message counts 10) handled per read before yielding",
    "handshake_timeout": "seconds for a new connection to send the preface and SETTINGS",
    "idle_timeout": "seconds a connection without open streams may stay silent",
    "warn_every": "seconds between two warnings of one kind (the count of the rest is logged)",
    "ping_flood": "PING frames: BURST,PER_SECOND",
    "settings_flood": "SETTINGS frames: BURST,PER_SECOND",
    "reset_flood": "streams reset or refused before any request message: BURST,PER_SECOND",
    "empty_flood": "frames that carry nothing (empty DATA/CONTINUATION, PRIORITY, unknown"
    " types, frames for closed streams): BURST,PER_SECOND",
    "window_update_flood": "WINDOW_UPDATE frames: BURST,PER_SECOND",
}

DEFAULTS = H2Limits()


def env_name(name: str) -> str:
    return f"EXTPROC_H2_{name.upper()}"


def default_text(name: str) -> str:
    value = getattr(DEFAULTS, name)
    if isinstance(value, Flood):
        return value.text()
    return f"{value:g}" if isinstance(value, float) else str(value)


#: (env var, default text, help) for every limit, in --help order.
LIMIT_SETTINGS: tuple[tuple[str, str, str], ...] = tuple(
    (env_name(name), default_text(name), text) for name, text in _HELP.items()
)


def limits_from_env(environ: Mapping[str, str] | None = None) -> H2Limits:
    """Read every ``EXTPROC_H2_*`` limit; raise ValueError naming the bad variable."""
    source = os.environ if environ is None else environ
    changes: dict[str, object] = {}
    for field in dataclasses.fields(H2Limits):
        name = env_name(field.name)
        if name in source:
            changes[field.name] = _parse(name, field.name, source[name])
    return dataclasses.replace(DEFAULTS, **changes)  # type: ignore[arg-type]


def _parse(env: str, field: str, text: str) -> object:
    default = getattr(DEFAULTS, field)
    if isinstance(default, Flood):
        burst, _, rate = text.partition(",")
        try:
            flood = Flood(int(burst), float(rate))
        except ValueError:
            raise ValueError(f"{env}: {text!r} is not BURST,PER_SECOND (e.g. 100,10)") from None
        if flood.burst < 1 or not flood.per_second > 0:
            raise ValueError(f"{env}: {text!r} needs BURST >= 1 and PER_SECOND > 0")
        return flood
    if isinstance(default, float):
        try:
            seconds = float(text)
        except ValueError:
            raise ValueError(f"{env}: {text!r} is not a number of seconds") from None
        if not seconds > 0:
            raise ValueError(f"{env}: {text!r} must be greater than 0")
        return seconds
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{env}: {text!r} is not a whole number") from None
    low, high = _RANGES.get(field, (1, 2**31 - 1))
    if not low <= value <= high:
        raise ValueError(f"{env}: {value} is not within {low}..{high}")
    return value


_RANGES = {
    "stream_window": (16 * KiB, 2**31 - 1),
    "connection_window": (64 * KiB, 2**31 - 1),
    "max_header_list": (1 * KiB, 1 * MiB),
    "max_continuations": (0, 1000),
    "write_high_water": (16 * KiB, 1 << 30),
    "work_per_pass": (16, 1 << 20),
}
