"""The pure statistics of extproc.rollout.compare: Mann-Whitney on buckets agrees with
scipy on the samples behind them, re-binning keeps the count, the mixture boundary and the
confidence radius agree, and too little data never fails a comparison."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import mannwhitneyu

from extproc.rollout.compare import histogram, mixture, rates, sequential
from extproc.rollout.compare.events import EventTest
from extproc.rollout.compare.histogram import Histogram
from extproc.rollout.compare.rates import Counts

BOUNDS = (5.0, 10, 25, 50, 100, 200, 300, 400, 500, 600, 700, 800, 1000, 1500, 2000, 3000,
          5000, 10000, 30000, 60000, math.inf)  # fmt: skip


def binned(samples: np.ndarray) -> Histogram:
    index = np.searchsorted(np.array(BOUNDS), samples, side="left")
    counts = np.bincount(index, minlength=len(BOUNDS)).astype(float)
    return Histogram(BOUNDS, tuple(counts))


@pytest.mark.parametrize("seed", range(5))
def test_bucket_mann_whitney_equals_scipy_on_the_binned_samples(seed: int) -> None:
    rng = np.random.default_rng(seed)
    v1 = rng.lognormal(math.log(250), 0.4, 300)
    v2 = rng.lognormal(math.log(250), 0.4, 450) * rng.uniform(0.9, 1.3)
    value, variance = histogram.excess(binned(v2), binned(v1))
    bins = np.array(BOUNDS)
    ranks2 = np.searchsorted(bins, v2, side="left")
    ranks1 = np.searchsorted(bins, v1, side="left")
    result = mannwhitneyu(
        ranks2, ranks1, alternative="greater", use_continuity=False, method="asymptotic"
    )
    assert value + 0.5 == pytest.approx(result.statistic / (300 * 450), rel=1e-12)
    one_sided = 0.5 * math.erfc(value / math.sqrt(variance) / math.sqrt(2))
    assert one_sided == pytest.approx(result.pvalue, rel=1e-9)


def test_cumulative_buckets_become_counts() -> None:
    h = Histogram.from_cumulative([(100.0, 2.0), (200.0, 5.0), (math.inf, 6.0)])
    assert h.counts == (2.0, 3.0, 1.0) and h.total == 6.0
    assert h.cdf(150.0) == pytest.approx(3.5)
    assert h.cdf(10_000.0) == 5.0  # the +Inf bucket's count is above every finite value


counts_strategy = st.lists(
    st.integers(min_value=0, max_value=1000), min_size=len(BOUNDS), max_size=len(BOUNDS)
)


@given(counts_strategy, st.floats(min_value=0.2, max_value=5.0))
def test_rebinning_keeps_the_count_and_only_moves_mass_the_right_way(
    counts: list[int], ratio: float
) -> None:
    h = Histogram(BOUNDS, tuple(float(c) for c in counts))
    moved = h.scaled(ratio)
    assert moved.total == pytest.approx(h.total)
    assert all(c >= 0 for c in moved.counts)
    # slower (ratio > 1) never puts more mass below any bound, faster never less
    for bound in BOUNDS[:-1]:
        if ratio >= 1:
            assert moved.cdf(bound) <= h.cdf(bound) + 1e-9
        else:
            assert moved.cdf(bound) >= h.cdf(bound) - 1e-9


def test_identical_cohorts_have_no_excess_and_a_scaled_copy_is_found() -> None:
    rng = np.random.default_rng(7)
    v1 = binned(rng.lognormal(math.log(300), 0.3, 50_000))
    value, _ = histogram.excess(v1, v1)
    assert value == 0.0
    v2 = binned(rng.lognormal(math.log(300), 0.3, 50_000) * 1.2)
    effect, low, high = sequential.estimate(sequential.latency_statistic(v2, v1), 0.01, 0.0025)
    assert effect is not None and low is not None and high is not None
    assert low < effect < high and 0.15 < effect < 0.25 and low > 0.1


@given(st.floats(min_value=1e-8, max_value=1.0), st.floats(min_value=1e-4, max_value=0.2))
def test_the_radius_is_where_the_two_sided_ratio_reaches_one_over_alpha(
    variance: float, alpha: float
) -> None:
    tau2 = 0.05**2
    edge = mixture.radius(variance, tau2, alpha)
    assert mixture.log_ratio_two_sided(edge, variance, tau2) == pytest.approx(
        math.log(1 / alpha), rel=1e-9
    )


def test_the_one_sided_ratio_grows_with_the_excess_and_is_tiny_for_a_better_v2() -> None:
    values = [mixture.log_ratio_one_sided(x, 1e-4, 0.0025) for x in (-0.1, 0.0, 0.05, 0.1)]
    assert values == sorted(values)
    assert values[0] < -4
    far = mixture.log_ratio_one_sided(-5.0, 1e-6, 0.0025)  # the far tail stays finite
    assert -math.inf < far < values[0]
    assert mixture.log_ratio_one_sided(1.0, 0.0, 0.0025) == 0.0  # no variance, no evidence


def test_rates_compare_v2_against_scaled_v1() -> None:
    v1, v2 = Counts(50, 10_000), Counts(100, 10_000)
    value, variance = rates.excess(v2, v1, 1.0)
    assert value == pytest.approx(0.005) and variance > 0
    assert rates.excess(v2, v1, 2.0)[0] == pytest.approx(0.0)
    assert rates.excess(Counts(0, 100), Counts(0, 100), 1.0) == (0.0, 0.0)
    assert rates.excess(Counts(0, 0), v1, 1.0) == (0.0, 0.0)


@settings(max_examples=200)
@given(
    counts_strategy,
    counts_strategy,
    st.integers(min_value=1, max_value=100_000),
    st.floats(min_value=0.0, max_value=1.0),
    st.floats(min_value=0.0, max_value=50.0),
)
def test_too_few_samples_always_holds_whatever_the_data(
    v2: list[int], v1: list[int], min_samples: int, margin: float, best: float
) -> None:
    h2, h1 = Histogram(BOUNDS, tuple(map(float, v2))), Histogram(BOUNDS, tuple(map(float, v1)))
    running = sequential.Running(best_log_e=best)
    result = sequential.look(
        sequential.latency_statistic(h2, h1),
        margin=margin,
        alpha=0.01,
        tau2=0.0025,
        samples_v2=h2.total,
        samples_v1=h1.total,
        min_samples=min_samples,
        running=running,
    )
    if min(h2.total, h1.total) < min_samples:
        assert result.verdict == "hold" and result.running == running
    else:
        assert result.verdict in ("pass", "fail")


@given(
    st.integers(min_value=0, max_value=10_000),
    st.integers(min_value=0, max_value=10_000),
    st.integers(min_value=1, max_value=10_000),
)
def test_rate_looks_hold_below_the_floor(events: int, trials: int, floor: int) -> None:
    v2 = Counts(min(events, trials), trials)
    v1 = Counts(0, trials)
    result = sequential.look(
        sequential.rate_statistic(v2, v1),
        margin=0.0,
        alpha=0.01,
        tau2=sequential.rate_tau2(v2, v1),
        samples_v2=v2.trials,
        samples_v1=v1.trials,
        min_samples=floor,
        running=sequential.Running(),
    )
    assert (result.verdict == "hold") == (trials < floor)


def test_the_anytime_p_value_only_falls_and_fails_at_alpha() -> None:
    running = sequential.Running()
    for log_e in (1.0, 3.0, 2.0, math.log(100.0)):
        before = running.p_value
        running = running.after(log_e)
        assert running.p_value <= before
    assert running.p_value == pytest.approx(0.01) and running.looks == 4


def test_the_event_test_is_unmoved_without_events_and_grows_with_v2_errors() -> None:
    test = EventTest().advance(Counts(0, 500), Counts(0, 4500), 1.0)
    assert test.log_ratio == pytest.approx(0.0)
    worse = test.advance(Counts(20, 1000), Counts(10, 9000), 1.0)  # v2 rate 18x v1's
    assert worse.log_ratio > math.log(100)
    better = test.advance(Counts(0, 1000), Counts(40, 9000), 1.0)  # v2 clean, v1 erring
    assert better.log_ratio < 0
    assert worse.v2 == Counts(20, 1000) and worse.v1 == Counts(10, 9000)


@given(
    st.lists(
        st.tuples(st.integers(0, 3), st.integers(1, 300), st.integers(0, 20), st.integers(1, 3000)),
        min_size=1,
        max_size=30,
    ),
    st.floats(min_value=1.0, max_value=3.0),
)
def test_the_event_mixture_is_the_mean_of_its_per_shift_ratios(
    batches: list[tuple[int, int, int, int]], ratio: float
) -> None:
    test, totals = EventTest(), [0, 0, 0, 0]
    for batch in batches:
        totals = [t + b for t, b in zip(totals, batch, strict=True)]
        test = test.advance(Counts(totals[0], totals[1]), Counts(totals[2], totals[3]), ratio)
    mean = sum(math.exp(v) for v in test.log_ratios) / len(test.log_ratios)
    assert test.log_ratio == pytest.approx(math.log(mean), rel=1e-9, abs=1e-9)
