"""Admission at decision time: a drawn request is asked for its bodies only when the scoring
side can take it (queue room, budget not in debt) and its cohort's rate cap has a token;
otherwise it is skipped and counted by reason. The cap and its setting."""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from extproc import settings as S
from extproc.live.admission import MIN_SAMPLE_CPU_SECONDS, RateCap, default_cap
from extproc.live.feed import LiveFeed
from extproc.live.metrics import LiveMetrics
from extproc.stack.processes import wait_until
from tests.support.live_feed import GatedScorer, value

REPO = Path(__file__).resolve().parents[3]


def wait(condition: Callable[[], object], what: str, timeout: float = 10.0) -> None:
    wait_until(lambda: bool(condition()), what, timeout)


def test_the_cap_admits_its_burst_then_its_rate() -> None:
    cap = RateCap(2.0, now=100.0)
    assert [cap.take(100.0) for _ in range(3)] == [True, True, False]  # burst of 2
    assert not cap.take(100.4)  # 0.8 token
    assert cap.take(100.5)  # 1 token
    assert not cap.take(100.5)
    assert [cap.take(110.0) for _ in range(3)] == [True, True, False]  # refilled to the burst


def test_a_cap_below_one_per_second_still_admits_one_at_a_time() -> None:
    cap = RateCap(0.1, now=0.0)
    assert cap.take(0.0) and not cap.take(9.9)
    assert cap.take(10.0)


def test_no_cap_admits_everything_and_a_cap_must_be_positive() -> None:
    cap = RateCap(math.inf, now=0.0)
    assert all(cap.take(0.0) for _ in range(10_000))
    for bad in (0.0, -1.0, math.nan):
        with pytest.raises(ValueError, match="must be > 0"):
            RateCap(bad, now=0.0)


@given(
    rate=st.floats(0.1, 1000.0),
    gaps=st.lists(st.floats(0.0, 2.0), min_size=1, max_size=200),
)
def test_the_cap_never_admits_more_than_its_burst_plus_its_rate(
    rate: float, gaps: list[float]
) -> None:
    cap, now, taken = RateCap(rate, now=0.0), 0.0, 0
    for gap in gaps:
        now += gap
        taken += cap.take(now)
    assert taken <= max(1.0, rate) + rate * now + 1e-6


def test_the_default_cap_is_the_budget_over_the_cheapest_sample() -> None:
    assert default_cap(0.25) == pytest.approx(0.25 / MIN_SAMPLE_CPU_SECONDS) == pytest.approx(5)


@pytest.fixture
def metrics() -> LiveMetrics:
    return LiveMetrics()


def feed_with(scorer: GatedScorer, metrics: LiveMetrics, **options: object) -> LiveFeed:
    return LiveFeed(metrics, scorer=scorer, **options).start()  # type: ignore[arg-type]


def test_a_full_queue_skips_at_decision_time(metrics: LiveMetrics) -> None:
    scorer = GatedScorer()
    feed = feed_with(scorer, metrics, queue_size=2, cpu_cores=4.0, max_per_second=math.inf)
    try:
        assert feed.admit("v2")
        feed.offer("v2", b"{}", b"RIFF", True)
        wait(lambda: len(scorer.jobs) == 1, "the thread to hold the first job")
        for _ in range(2):
            assert feed.admit("v2")
            feed.offer("v2", b"{}", b"RIFF", True)
        assert not feed.admit("v2") and not feed.admit("v1")  # 2 queued: no room
        assert value(metrics, "skipped_total", cohort="v2", reason="queue_full") == 1
        assert value(metrics, "skipped_total", cohort="v1", reason="queue_full") == 1
        scorer.gate.set()
        wait(lambda: feed.scored == 3, "the queue to drain")
        assert feed.admit("v2")
    finally:
        feed.close()
    assert value(metrics, "dropped_total", reason="queue_full") == 0  # skipped, not dropped


def test_a_budget_in_debt_skips_until_it_refills(metrics: LiveMetrics) -> None:
    now = [0.0]
    scorer = GatedScorer(cpu=10.0)  # one sample: 10 CPU seconds, the burst is 4
    scorer.gate.set()
    feed = feed_with(scorer, metrics, cpu_cores=0.5, clock=lambda: now[0])
    try:
        assert feed.admit("v2")
        feed.offer("v2", b"{}", b"RIFF", True)
        wait(lambda: feed.scored == 1, "the first sample")
        assert not feed.admit("v2")  # 6 CPU seconds in debt: 12 s at half a core
        assert value(metrics, "skipped_total", cohort="v2", reason="over_budget") == 1
        now[0] = 11.9
        assert not feed.admit("v1")
        now[0] = 12.1
        assert feed.admit("v1")
    finally:
        feed.close()


def test_the_rate_cap_is_per_cohort(metrics: LiveMetrics) -> None:
    now = [0.0]
    scorer = GatedScorer()
    scorer.gate.set()
    feed = feed_with(scorer, metrics, cpu_cores=4.0, max_per_second=1.0, clock=lambda: now[0])
    try:
        assert [feed.admit("v2") for _ in range(3)] == [True, False, False]
        assert feed.admit("v1")  # v1 has its own bucket
        assert value(metrics, "skipped_total", cohort="v2", reason="rate_cap") == 2
        now[0] = 1.0
        assert feed.admit("v2")
    finally:
        feed.close()


def test_the_default_cap_follows_the_cpu_budget(metrics: LiveMetrics) -> None:
    feed = LiveFeed(metrics, scorer=GatedScorer(), cpu_cores=0.5)
    assert feed.max_per_second == default_cap(0.5) == pytest.approx(10)
    feed.close()


def test_the_scorer_ready_gauge_rises_after_the_warm_up(metrics: LiveMetrics) -> None:
    feed = LiveFeed(metrics, scorer=GatedScorer(), cpu_cores=1.0)
    assert value(metrics, "scorer_ready") == 0
    feed.start()
    try:
        wait(lambda: value(metrics, "scorer_ready") == 1, "the warm-up")
    finally:
        feed.close()


@pytest.mark.parametrize(
    ("text", "expected"),
    [("auto", None), (" auto ", None), ("3", 3.0), ("0.5", 0.5), ("inf", math.inf)],
)
def test_the_cap_setting(text: str, expected: float | None) -> None:
    assert S.sample_max_per_second(text) == expected


@pytest.mark.parametrize(
    ("text", "error"),
    [("0", "must be greater than 0"), ("-2", "must be greater than 0"),
     ("nan", "must be greater than 0"), ("lots", "is not a number"), ("", "is not a number")],
)  # fmt: skip
def test_a_bad_cap_names_the_setting(text: str, error: str) -> None:
    with pytest.raises(ValueError, match="EXTPROC_SAMPLE_MAX_PER_SECOND") as info:
        S.sample_max_per_second(text)
    assert error in str(info.value)


def test_serve_exits_2_on_a_bad_cap_naming_it() -> None:
    env = {"EXTPROC_SAMPLE_RATE": "0.01", "EXTPROC_SAMPLE_MAX_PER_SECOND": "0", "PATH": ""}
    run = subprocess.run(
        [sys.executable, "-m", "extproc", "serve", "--rules", "examples/rules.yaml"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert run.returncode == 2
    assert "extproc serve: EXTPROC_SAMPLE_MAX_PER_SECOND: '0' must be greater than 0" in run.stderr


def test_serve_help_lists_the_cap_with_its_default() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "extproc", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    line = next(x for x in run.stdout.splitlines() if "EXTPROC_SAMPLE_MAX_PER_SECOND" in x)
    assert "default 'auto'" in line
