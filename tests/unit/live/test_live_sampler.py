"""The sampling decision and its setting: per cohort, by a draw, never by user."""

from __future__ import annotations

import itertools
import random

import pytest

from extproc import settings as S
from extproc.live.sampler import Sampler


def test_one_fraction_applies_to_both_cohorts() -> None:
    assert S.sample_rates("0.01") == (("v1", 0.01), ("v2", 0.01))
    assert S.sample_rates("0") == (("v1", 0.0), ("v2", 0.0))
    assert S.sample_rates("") == (("v1", 0.0), ("v2", 0.0))


def test_per_cohort_fractions_and_an_unnamed_cohort_is_off() -> None:
    assert S.sample_rates("v1=0.01, v2=0.05") == (("v1", 0.01), ("v2", 0.05))
    assert S.sample_rates("v2=1") == (("v1", 0.0), ("v2", 1.0))


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("2", "is not within 0..1"),
        ("-0.1", "is not within 0..1"),
        ("lots", "is not a number"),
        ("v3=0.1", "'v3' is not a cohort"),
        ("v1=0.1,v1=0.2", "v1 is given twice"),
        ("v2=x", "--sample-rate (or EXTPROC_SAMPLE_RATE) v2: 'x' is not a number"),
    ],
)
def test_bad_rates_name_the_setting(text: str, error: str) -> None:
    with pytest.raises(ValueError, match="EXTPROC_SAMPLE_RATE") as info:
        S.sample_rates(text)
    assert error in str(info.value)


def test_sampling_is_off_unless_a_rate_is_above_zero() -> None:
    base = S.ServeSettings("r", "l", "", 1.0, 1.0, "asyncio", "info")
    assert not base.sampling
    assert not S.ServeSettings(**{**_fields(base), "sample_rates": S.sample_rates("0")}).sampling
    assert S.ServeSettings(**{**_fields(base), "sample_rates": S.sample_rates("v2=0.5")}).sampling


def _fields(settings: S.ServeSettings) -> dict[str, object]:
    return {name: getattr(settings, name) for name in settings.__dataclass_fields__}


def test_the_draw_decides_against_the_cohorts_rate() -> None:
    draws = itertools.cycle([0.0, 0.009, 0.01, 0.5, 0.999])
    sampler = Sampler((("v1", 0.01), ("v2", 0.0)), draw=lambda: next(draws))
    assert [sampler.sampled("v1") for _ in range(5)] == [True, True, False, False, False]
    assert not any(sampler.sampled("v2") for _ in range(10))  # 0: never, not even a draw
    assert not sampler.sampled("canary-x")  # a cohort without a rate


def test_full_rate_always_samples_and_the_fraction_holds_roughly() -> None:
    rng = random.Random(7)
    sampler = Sampler((("v1", 1.0), ("v2", 0.1)), draw=rng.random)
    assert all(sampler.sampled("v1") for _ in range(1000))
    hits = sum(sampler.sampled("v2") for _ in range(20_000))
    assert 1700 < hits < 2300  # 10 % of 20,000 (about 7 standard deviations either side)
