"""Flood meters and throttled warnings: the small pieces of the server's defences."""

from __future__ import annotations

import logging

from extproc.h2_limits import Flood


class Bucket:
    """A token bucket: ``take(now)`` is False once the peer exceeded the flood limit.

    Time is the event loop's clock, read once per read by the caller; nothing here
    reads a clock, so tests drive it with any numbers.
    """

    __slots__ = ("_burst", "_last", "_rate", "_tokens")

    def __init__(self, flood: Flood, now: float) -> None:
        self._burst = float(flood.burst)
        self._rate = flood.per_second
        self._tokens = self._burst
        self._last = now

    def take(self, now: float) -> bool:
        tokens = self._tokens
        if now > self._last:
            tokens = min(self._burst, tokens + (now - self._last) * self._rate)
            self._last = now
        if tokens < 1.0:
            self._tokens = tokens
            return False
        self._tokens = tokens - 1.0
        return True


class ThrottledLog:
    """At most one warning per ``kind`` every ``every`` seconds; the rest are counted
    and their number is written with the next line of that kind."""

    def __init__(self, log: logging.Logger, every: float) -> None:
        self._log = log
        self._every = every
        self._next: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warn(self, now: float, kind: str, message: str) -> None:
        if now < self._next.get(kind, 0.0):
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
            return
        self._next[kind] = now + self._every
        more = self._suppressed.pop(kind, 0)
        suffix = f" (and {more} more of this kind in the last {self._every:g}s)" if more else ""
        self._log.warning("h2 %s: %s%s", kind, message, suffix)
