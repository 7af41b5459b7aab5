"""Injectable clocks: the manual one for tests, the scaled one for processes."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from extproc.rollout import clock as clock_module
from extproc.rollout.clock import ClockOrigin, FakeClock, ScaledClock, parse_start

START = dt.datetime(2026, 11, 25, 6, 59, tzinfo=dt.timezone(dt.timedelta(hours=1)))


def test_fake_clock_moves_only_when_told() -> None:
    clock = FakeClock(START)
    assert clock.now() == START.timestamp() and clock.monotonic() == 0.0
    clock.advance(90)
    assert clock.now() == START.timestamp() + 90 and clock.monotonic() == 90
    asyncio.run(clock.sleep(10))
    assert clock.monotonic() == 100
    clock.set_now(START)  # the calendar may jump, real time does not
    assert clock.now() == START.timestamp() and clock.monotonic() == 100
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(-1)


class FakeMonotonic:
    def __init__(self) -> None:
        self.value = 1000.0

    def __call__(self) -> float:
        return self.value


def test_scaled_clock_runs_the_calendar_faster_but_not_real_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monotonic, wall = FakeMonotonic(), FakeMonotonic()
    monkeypatch.setattr(clock_module.time, "monotonic", monotonic)
    monkeypatch.setattr(clock_module.time, "time", wall)
    clock = ScaledClock(START, speed=720)
    assert clock.now() == START.timestamp()
    monotonic.value += 10  # ten real seconds ...
    wall.value += 10
    assert clock.now() == START.timestamp() + 2 * 3600  # ... are two calendar hours
    assert clock.monotonic() == 1010.0  # real time stays real (guard windows, interval)


def test_a_scaled_clock_from_a_stored_origin_reads_the_same_calendar(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two replicas (or a restarted one) started at different times agree: the calendar
    comes from the origin, not from each process's start."""
    wall = FakeMonotonic()
    monkeypatch.setattr(clock_module.time, "time", wall)
    first = ScaledClock(START, speed=720)
    wall.value += 30  # the second replica starts 30 s later
    second = ScaledClock.from_origin(ClockOrigin.from_json(first.origin.to_json()))
    assert first.now() == second.now() == START.timestamp() + 30 * 720
    with pytest.raises(ValueError, match="not a clock origin"):
        ClockOrigin.from_json({"start": 1, "wall": 2, "speed": 0})


def test_scaled_clock_starts_now_without_a_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clock_module.time, "time", lambda: 1234.5)
    assert ScaledClock(speed=2).now() == pytest.approx(1234.5, abs=1.0)


def test_scaled_clock_needs_a_positive_speed() -> None:
    with pytest.raises(ValueError, match="greater than 0"):
        ScaledClock(START, speed=0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-25T06:59:00+01:00", START),
        ("2026-11-25T05:59:00Z", START),
        ("2026-11-25T05:59:00", START),  # naive: UTC
    ],
)
def test_parse_start(text: str, expected: dt.datetime) -> None:
    assert parse_start(text) == expected


def test_parse_start_says_what_it_wants() -> None:
    with pytest.raises(ValueError, match="is not an ISO 8601 time like 2026-11-25T06:59:00"):
        parse_start("tomorrow at seven")
