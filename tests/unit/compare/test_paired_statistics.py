"""The paired test on audio differences (extproc.rollout.compare.paired): hold on too few
pairs, fail only beyond the margin, the anytime p-value, the interval, and properties:
too little data never fails; A/A under the null fails at most about alpha of stages."""

from __future__ import annotations

import math
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from extproc.rollout.compare import paired

MOS = {"tau": 0.2, "bound": 4.0}


def draws(seed: int, mean: float, sd: float, n: int) -> list[float]:
    rng = random.Random(seed)
    return [min(max(rng.gauss(mean, sd), -4.0), 4.0) for _ in range(n)]


def test_fewer_pairs_than_min_samples_hold_whatever_they_say() -> None:
    result = paired.look([3.0] * 19, margin=0.2, alpha=0.01, min_samples=20, **MOS)
    assert result.verdict == "hold"
    assert result.p_value == 1.0 and result.samples == 19
    assert result.effect == 3.0 and result.low is None and result.high is None


def test_a_clear_drop_beyond_the_margin_fails_with_an_interval_above_it() -> None:
    diffs = draws(1, 0.8, 0.3, 30)  # v2 0.8 MOS below v1 on the same texts
    result = paired.look(diffs, margin=0.2, alpha=0.01, min_samples=20, **MOS)
    assert result.verdict == "fail"
    assert result.p_value <= 0.01 and result.e_value >= 100
    assert result.low is not None and result.high is not None and result.effect is not None
    assert 0.2 < result.low < result.effect < result.high


def test_a_drop_inside_the_margin_passes() -> None:
    diffs = draws(2, 0.1, 0.3, 300)
    result = paired.look(diffs, margin=0.2, alpha=0.01, min_samples=20, **MOS)
    assert result.verdict == "pass"
    assert result.low is not None and result.high is not None
    assert result.low < 0.1 < result.high < 0.2


def test_an_improvement_passes_and_carries_no_evidence() -> None:
    diffs = draws(3, -0.5, 0.3, 100)
    result = paired.look(diffs, margin=0.0, alpha=0.01, min_samples=20, **MOS)
    assert result.verdict == "pass" and result.p_value == 1.0
    assert result.e_value < 0.05  # far below 1: evidence for, not against, the null


def test_identical_differences_do_not_divide_by_zero() -> None:
    same = paired.look([0.0] * 40, margin=0.2, alpha=0.01, min_samples=20, **MOS)
    assert same.verdict == "pass" and same.p_value == 1.0
    worse = paired.look([0.5] * 40, margin=0.2, alpha=0.01, min_samples=20, **MOS)
    assert worse.verdict == "fail"  # a steady 0.5 drop on every text is surely worse


def test_the_p_value_is_the_running_maximum_from_min_samples_on() -> None:
    """Evidence seen once stays (anytime p-value); rounds before min_samples do not count."""
    early = [2.0] * 5 + [0.0] * 60
    path = paired.log_ratio_path(early, 0.2, 0.2, 4.0)
    result = paired.look(early, margin=0.2, alpha=0.01, min_samples=20, **MOS)
    assert math.isclose(result.p_value, min(1.0, math.exp(-max(0.0, *path[19:]))))
    assert result.p_value >= math.exp(-max(path))


@settings(max_examples=60, deadline=None)
@given(
    diffs=st.lists(st.floats(-4.0, 4.0, allow_nan=False), max_size=19),
    margin=st.floats(0.0, 3.9),
    alpha=st.sampled_from([0.0001, 0.01, 0.1]),
)
def test_insufficient_data_never_fails(diffs: list[float], margin: float, alpha: float) -> None:
    result = paired.look(diffs, margin=margin, alpha=alpha, min_samples=20, **MOS)
    assert result.verdict == "hold"


@settings(max_examples=40, deadline=None)
@given(
    diffs=st.lists(st.floats(-4.0, 4.0, allow_nan=False), min_size=20, max_size=200),
    alpha=st.sampled_from([0.01, 0.05]),
)
def test_the_figures_are_consistent(diffs: list[float], alpha: float) -> None:
    result = paired.look(diffs, margin=0.2, alpha=alpha, min_samples=20, **MOS)
    assert 0.0 < result.p_value <= 1.0 and result.e_value >= 0.0
    assert result.verdict == ("fail" if result.p_value <= alpha else "pass")
    assert result.low is not None and result.high is not None and result.effect is not None
    assert -4.0 <= result.low <= result.effect + 1e-9 <= result.high + 2e-9 <= 4.0 + 2e-9


@settings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), sd=st.sampled_from([0.1, 0.35, 1.0]))
def test_a_over_a_fails_at_most_about_alpha_of_stages(seed: int, sd: float) -> None:
    """400 simulated stages of 360 pairs each at the null boundary (true drop = margin):
    at most 2 % fail at alpha 1 % (the expected count is <= 4; 8 is far in the tail of
    Binomial(400, 0.01), so a failure here means a broken test, not bad luck)."""
    rng = random.Random(seed)
    stages, fails = 400, 0
    for _ in range(stages):
        diffs = [rng.gauss(0.2, sd) for _ in range(360)]
        path = paired.log_ratio_path(diffs, 0.2, 0.2, 4.0)
        fails += max(path[19:]) >= math.log(100)
    assert fails <= 8
