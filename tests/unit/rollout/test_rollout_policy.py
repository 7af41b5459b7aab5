"""The ramp policy: one fixture per failure mode with its exact message, defaults, the caps
and the freeze windows."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest

from extproc.core.bucket import BUCKETS
from extproc.core.errors import RulesError
from extproc.rollout import policy as policy_module
from extproc.rollout.policy import Comparison, FreezeWindow, load_policy, parse_policy

ROOT = Path(__file__).resolve().parents[3]
INVALID = sorted((ROOT / "tests/fixtures/policy_invalid").glob("*.yaml"))
EXPECT = re.compile(rb"^# expect: (.*)$", re.MULTILINE)
PERCENT = BUCKETS // 100


def expected_message(path: Path) -> str:
    match = EXPECT.search(path.read_bytes())
    assert match, f"{path.name} has no '# expect:' line"
    return f"{path}:{match.group(1).decode()}"


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_each_invalid_policy_has_its_own_exact_error(path: Path) -> None:
    with pytest.raises(RulesError) as info:
        load_policy(path)
    assert str(info.value) == expected_message(path)


def test_invalid_policies_cover_every_failure_mode_once() -> None:
    messages = [expected_message(p).split(":", 2)[2] for p in INVALID]
    assert len(INVALID) >= 20
    assert len(set(messages)) == len(messages), "two fixtures test the same message"


def test_documented_example_loads_with_its_values() -> None:
    doc = policy_module.__doc__ or ""
    example = doc.split("```yaml\n", 1)[1].split("```", 1)[0]
    policy = parse_policy("doc.yaml", example.encode())
    assert policy.rollout == "gpt-sovits-v2"
    assert (policy.initial_share, policy.step) == (10 * PERCENT, 10 * PERCENT)
    assert policy.step_interval == 7200.0 and policy.rollback_share == 0
    assert policy.timezone == "Europe/Berlin"
    assert policy.freeze == (
        FreezeWindow(dt.time(7, 0), dt.time(9, 30)),
        FreezeWindow(dt.time(18, 0), dt.time(22, 0)),
    )
    p95, errors, gap, mos, compare = policy.guards
    assert (p95.signal, p95.cohort, p95.threshold, p95.window) == ("latency_p95", "v2", 0.8, 60)
    assert (errors.threshold, errors.min_samples) == (0.005, 200)
    assert (gap.cohort, gap.threshold) == ("v2-v1", 0.2)
    assert (mos.signal, mos.threshold, mos.window, mos.query[:3]) == ("promql", 0.2, 300, "avg")
    assert (compare.signal, compare.cohort, compare.min_samples) == ("compare", "v2-v1", 200)
    assert compare.compare == Comparison(metric="latency", margin=0.1, alpha=0.01)


def test_compare_guard_defaults_to_alpha_one_percent_and_100_samples() -> None:
    text = b"policy: {rollout: r, initial_share: 5%, guards: [{name: c,\n"
    text += b"  compare: {metric: error_rate, margin: 50%}}]}\n"
    (guard,) = parse_policy("p.yaml", text).guards
    assert guard.compare == Comparison(metric="error_rate", margin=0.5, alpha=0.01)
    assert (guard.min_samples, guard.window, guard.threshold) == (100, 0.0, 0.5)


def test_defaults() -> None:
    policy = parse_policy("p.yaml", b"policy: {rollout: r, initial_share: 5%}\n")
    assert policy.step == 10 * PERCENT and policy.step_interval == 7200.0
    assert policy.rollback_share == 0 and policy.timezone == "UTC"
    assert policy.freeze == () and policy.guards == ()


def test_guard_defaults_to_cohort_v2_and_one_sample() -> None:
    text = b"policy: {rollout: r, initial_share: 5%, guards: [{name: e, signal: error_rate,\n"
    text += b"  threshold: 1%, window: 30s}]}\n"
    (guard,) = parse_policy("p.yaml", text).guards
    assert (guard.cohort, guard.min_samples, guard.threshold) == ("v2", 1, 0.01)


@pytest.mark.parametrize(
    ("text", "seconds"), [("800ms", 0.8), ("60s", 60), ("1.5m", 90), ("2h", 7200)]
)
def test_durations(text: str, seconds: float) -> None:
    policy = parse_policy(
        "p.yaml", f"policy: {{rollout: r, initial_share: 1%, step_interval: {text}}}".encode()
    )
    assert policy.step_interval == pytest.approx(seconds)


def test_initial_share_of_exactly_ten_percent_is_allowed() -> None:
    policy = parse_policy("p.yaml", b"policy: {rollout: r, initial_share: 10%}\n")
    assert policy.initial_share == BUCKETS // 10


@pytest.mark.parametrize(
    ("share", "step", "expected"),
    [
        (10, 10, 20),  # +10 points, exactly double
        (20, 10, 30),
        (1, 10, 2),  # the doubling cap binds: 1 % -> 2 %, not 11 %
        (4, 10, 8),
        (95, 10, 100),  # never above 100 %
        (100, 10, 100),
    ],
)
def test_next_share_adds_the_step_never_more_than_double(
    share: int, step: int, expected: int
) -> None:
    text = f"policy: {{rollout: r, initial_share: 1%, step: {step}%}}".encode()
    policy = parse_policy("p.yaml", text)
    assert policy.next_share(share * PERCENT) == expected * PERCENT


def test_next_share_from_zero_is_one_bucket() -> None:
    policy = parse_policy("p.yaml", b"policy: {rollout: r, initial_share: 1%}\n")
    assert policy.next_share(0) == 1


def _frozen_policy(windows: str, timezone: str = "Europe/Berlin") -> bytes:
    return (
        f"policy: {{rollout: r, initial_share: 1%, freeze: {{timezone: {timezone},\n"
        f"  windows: {windows}}}}}\n"
    ).encode()


@pytest.mark.parametrize(
    ("local", "frozen"),
    [("06:59", False), ("07:00", True), ("09:29", True), ("09:30", False), ("19:00", True)],
)
def test_freeze_windows_are_read_in_the_policy_time_zone(local: str, frozen: bool) -> None:
    policy = parse_policy("p.yaml", _frozen_policy('["07:00-09:30", "18:00-22:00"]'))
    berlin = dt.datetime.fromisoformat(f"2026-11-25T{local}:00+01:00")
    assert policy.frozen_at(berlin) is frozen
    assert policy.frozen_at(berlin.astimezone(dt.UTC)) is frozen  # same moment, other zone


def test_freeze_window_may_span_midnight() -> None:
    policy = parse_policy("p.yaml", _frozen_policy('["22:00-06:00"]', "UTC"))
    at = dt.datetime.fromisoformat
    assert policy.frozen_at(at("2026-11-25T23:30:00+00:00"))
    assert policy.frozen_at(at("2026-11-26T05:59:00+00:00"))
    assert not policy.frozen_at(at("2026-11-26T06:00:00+00:00"))
    assert not policy.frozen_at(at("2026-11-26T21:59:00+00:00"))
