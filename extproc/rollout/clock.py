"""Injectable time for the rollout controller: real, scaled (for processes) and manual (tests).

A clock has two faces, kept apart on purpose:

- ``now()``: calendar time, unix seconds. The ramp schedule (``next_step_at``) and the freeze
  windows read it. A :class:`ScaledClock` moves it ``speed`` times faster from a chosen
  ``start``, so a 2-hour step or a 07:00-09:30 freeze window passes in seconds.
- ``monotonic()`` and ``sleep()``: real elapsed seconds, never scaled. The check interval and
  the guard windows use them, because they measure real traffic: a 60 s latency window must
  hold 60 s of requests whatever the calendar does.

:class:`FakeClock` moves both faces only when a test says so.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Calendar time in unix seconds (schedule and freeze windows)."""
        ...

    def monotonic(self) -> float:
        """Real elapsed seconds from an arbitrary origin (check interval, guard windows)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of real (monotonic) time."""
        ...


class SystemClock:
    """The machine's clock."""

    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class ScaledClock:
    """Calendar time that starts at ``start`` (default: now) and runs ``speed`` times faster
    than real time; ``monotonic`` and ``sleep`` stay real. speed 720 makes 2 h pass in 10 s."""

    def __init__(self, start: dt.datetime | float | None = None, speed: float = 1.0) -> None:
        if not speed > 0:
            raise ValueError(f"clock speed {speed} must be greater than 0")
        if isinstance(start, dt.datetime):
            start = to_aware(start).timestamp()
        self.start = time.time() if start is None else float(start)
        self.speed = float(speed)
        self._anchor = time.monotonic()

    def now(self) -> float:
        return self.start + (time.monotonic() - self._anchor) * self.speed

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class FakeClock:
    """A clock that moves only on :meth:`advance` (or :meth:`sleep`, which advances)."""

    def __init__(self, start: dt.datetime | float = 1_800_000_000.0) -> None:
        if isinstance(start, dt.datetime):
            start = to_aware(start).timestamp()
        self._now = float(start)
        self._monotonic = 0.0

    def now(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._monotonic

    def advance(self, seconds: float) -> None:
        """Move both faces forward by ``seconds`` (>= 0)."""
        if seconds < 0:
            raise ValueError("a clock does not go backwards")
        self._now += seconds
        self._monotonic += seconds

    def set_now(self, moment: dt.datetime | float) -> None:
        """Jump the calendar to ``moment`` (either way); real time does not move."""
        if isinstance(moment, dt.datetime):
            moment = to_aware(moment).timestamp()
        self._now = float(moment)

    async def sleep(self, seconds: float) -> None:
        self.advance(seconds)
        await asyncio.sleep(0)


def to_aware(moment: dt.datetime) -> dt.datetime:
    """``moment`` with a time zone: a naive datetime is taken as UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


def parse_start(text: str) -> dt.datetime:
    """An ISO 8601 moment ('2026-11-25T06:59:00+01:00', '...Z'); naive means UTC.
    ValueError with the accepted form otherwise."""
    try:
        return to_aware(dt.datetime.fromisoformat(text.strip()))
    except ValueError:
        raise ValueError(
            f"{text!r} is not an ISO 8601 time like 2026-11-25T06:59:00+01:00"
        ) from None
