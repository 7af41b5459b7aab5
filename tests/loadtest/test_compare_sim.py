"""The comparison bench: its vectorized statistics equal the shipped pure ones, and a small
run shows what the full one does (A/A false alarms at most alpha for the sequential test,
more for peeking; a 20 % slower v2 found). Bounded: a few seconds."""

from __future__ import annotations

import math

import numpy as np
import pytest

from extproc.rollout.compare import histogram, mixture, rates
from extproc.rollout.compare.events import EventTest
from extproc.rollout.compare.histogram import Histogram
from extproc.rollout.compare.rates import Counts
from loadtest.compare import vector
from loadtest.compare.simulate import ENVOY_BOUNDS, Scenario, Traffic, run


@pytest.mark.parametrize("seed", range(3))
def test_vectorized_statistics_equal_the_core(seed: int) -> None:
    rng = np.random.default_rng(seed)
    size = len(ENVOY_BOUNDS)
    v2 = rng.integers(0, 50, (8, size)).astype(float)
    v1 = rng.integers(0, 50, (8, size)).astype(float)
    matrix = vector.rebin_matrix(ENVOY_BOUNDS, 0.0, 1.1, 0.0)
    value, variance = vector.mann_whitney_excess(v2, v1 @ matrix)
    log_e = vector.log_ratio_one_sided(value, variance, 0.0025)
    for i in range(8):
        h1 = Histogram(ENVOY_BOUNDS, tuple(v1[i])).scaled(1.1)
        core_value, core_variance = histogram.excess(Histogram(ENVOY_BOUNDS, tuple(v2[i])), h1)
        assert value[i] == pytest.approx(core_value, abs=1e-12)
        assert variance[i] == pytest.approx(core_variance, rel=1e-9)
        core_log_e = mixture.log_ratio_one_sided(core_value, core_variance, 0.0025)
        assert log_e[i] == pytest.approx(core_log_e, rel=1e-9, abs=1e-9)
    trials = rng.integers(1, 5000, 8).astype(float)
    events = np.floor(trials * rng.uniform(0, 0.02, 8))
    rv, rvar = vector.rate_excess(events, trials, events[::-1], trials[::-1], 1.2)
    for i in range(8):
        j = 7 - i
        cv, cvar = rates.excess(Counts(events[i], trials[i]), Counts(events[j], trials[j]), 1.2)
        assert rv[i] == pytest.approx(cv, abs=1e-15) and rvar[i] == pytest.approx(cvar)


def test_the_vectorized_event_test_equals_the_core() -> None:
    rng = np.random.default_rng(9)
    n2 = rng.integers(0, 30, (3, 40)).astype(float)
    n1 = rng.integers(0, 300, (3, 40)).astype(float)
    x2 = rng.binomial(n2.astype(int), 0.02).astype(float)
    x1 = rng.binomial(n1.astype(int), 0.01).astype(float)
    log_e = vector.event_log_ratio(x2, n2, x1, n1, 1.2)
    for s in range(3):
        test = EventTest()
        c2, c1 = np.cumsum(n2[s]), np.cumsum(n1[s])
        e2, e1 = np.cumsum(x2[s]), np.cumsum(x1[s])
        for look in range(40):
            test = test.advance(Counts(e2[look], c2[look]), Counts(e1[look], c1[look]), 1.2)
            assert log_e[s, look] == pytest.approx(test.log_ratio, rel=1e-9, abs=1e-9)


def test_a_small_run_shows_validity_peeking_and_power() -> None:
    traffic = Traffic(stage_seconds=1800.0)
    stages, alpha = 300, 0.01
    aa = run(Scenario("A/A", "latency", margin=0.0, v2=1.0), traffic, alpha, stages, seed=3)
    sequential_rate = float((aa.fail_look["sequential"] >= 0).mean())
    peeking_rate = float((aa.fail_look["peeking"] >= 0).mean())
    # 300 stages: a binomial bound well above alpha, far below what peeking does
    assert sequential_rate <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / stages)
    assert peeking_rate > 3 * alpha
    ab = run(Scenario("+20%", "latency", margin=0.05, v2=1.2), traffic, alpha, 100, seed=4)
    found = ab.fail_look["sequential"]
    assert (found >= 0).all() and np.median(found + 1) * traffic.look_seconds <= 120
    assert (ab.fail_look["threshold"] < 0).all()  # p95 ~ 530 ms: under 800 ms
    errors = Scenario("A/A", "errors", margin=0.0, v2=0.005, v1=0.005)
    aa_errors = run(errors, traffic, alpha, stages, seed=5)
    assert float((aa_errors.fail_look["sequential"] >= 0).mean()) <= alpha + 3 * math.sqrt(
        alpha * (1 - alpha) / stages
    )
    assert float((aa_errors.fail_look["peeking"] >= 0).mean()) > 3 * alpha
