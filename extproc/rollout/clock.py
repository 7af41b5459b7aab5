"""Injectable time for the rollout controller: real, scaled (for processes) and manual (tests).

A clock has two faces, kept apart on purpose:

- ``now()``: calendar time, unix seconds. The ramp schedule (``next_step_at``) and the freeze
  windows read it. A :class:`ScaledClock` moves it ``speed`` times faster from a
  :class:`ClockOrigin` (calendar ``start`` at wall-clock ``wall``), so a 2-hour step or a
  07:00-09:30 freeze window passes in seconds. The origin is stored with the rollout's
  state (see the stores' ``clock_origin``), so every replica and every restart reads the
  same calendar; it is anchored to the wall clock (not a process's monotonic clock) for
  that reason.
- ``monotonic()`` and ``sleep()``: real elapsed seconds, never scaled. The check interval and
  the guard windows use them, because they measure real traffic: a 60 s latency window must
  hold 60 s of requests whatever the calendar does.

:class:`FakeClock` moves both faces only when a test says so.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from dataclasses import dataclass
from typing import Any, Protocol


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


@dataclass(frozen=True, slots=True)
class ClockOrigin:
    """A scaled calendar: at wall-clock time ``wall`` (unix seconds) the calendar read
    ``start``, and it runs ``speed`` times faster than the wall clock."""

    start: float
    wall: float
    speed: float

    def to_json(self) -> dict[str, Any]:
        return {"start": self.start, "wall": self.wall, "speed": self.speed}

    @classmethod
    def from_json(cls, data: Any) -> ClockOrigin:
        """ValueError unless ``data`` is ``{"start": s, "wall": w, "speed": x > 0}``."""
        try:
            origin = cls(float(data["start"]), float(data["wall"]), float(data["speed"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a clock origin: {data!r} ({exc})") from None
        if not origin.speed > 0:
            raise ValueError(f"not a clock origin: speed {origin.speed} must be > 0")
        return origin

    def calendar_at(self, wall: float) -> float:
        return self.start + (wall - self.wall) * self.speed

    def describe(self) -> str:
        start = dt.datetime.fromtimestamp(self.start, dt.UTC).isoformat()
        wall = dt.datetime.fromtimestamp(self.wall, dt.UTC).isoformat(timespec="seconds")
        return f"calendar {start} at wall clock {wall}, x{self.speed:g}"


class ScaledClock:
    """Calendar time from an origin: it starts at ``start`` (default: now) and runs
    ``speed`` times faster than the wall clock; ``monotonic`` and ``sleep`` stay real.
    speed 720 makes 2 h pass in 10 s. :meth:`from_origin` follows a stored origin."""

    def __init__(self, start: dt.datetime | float | None = None, speed: float = 1.0) -> None:
        if not speed > 0:
            raise ValueError(f"clock speed {speed} must be greater than 0")
        if isinstance(start, dt.datetime):
            start = to_aware(start).timestamp()
        wall = time.time()
        self.origin = ClockOrigin(wall if start is None else float(start), wall, float(speed))

    @classmethod
    def from_origin(cls, origin: ClockOrigin) -> ScaledClock:
        clock = cls(origin.start, origin.speed)
        clock.origin = origin
        return clock

    @property
    def start(self) -> float:
        return self.origin.start

    @property
    def speed(self) -> float:
        return self.origin.speed

    def now(self) -> float:
        return self.origin.calendar_at(time.time())

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
