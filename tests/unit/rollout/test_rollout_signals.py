"""Guard signals from Envoy's stats (parsing, windows, interpolated quantiles, error rates,
v2 - v1) and the judging of readings: too few samples hold, never pass nor fail."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import pytest

from extproc.rollout.clock import FakeClock
from extproc.rollout.guards.envoy_stats import (
    ADMIN_FILTER,
    ClusterCounts,
    difference,
    error_rate,
    parse_scrape,
    quantile_ms,
)
from extproc.rollout.guards.judge import Reading, evaluate, judge, overall
from extproc.rollout.guards.signals import EnvoyStatsSource, PrometheusSource, reading_of
from extproc.rollout.policy import Guard
from extproc.rollout.state import Verdict
from tests.support.fake_envoy_stats import FakeEnvoyStats

ROOT = Path(__file__).resolve().parents[3]
CAPTURED = ROOT / "tests/fixtures/envoy_stats_prometheus.txt"
INF = math.inf


def guard(signal: str = "latency_p95", cohort: str = "v2", **kw: float) -> Guard:
    fields = {"threshold": 0.8, "window": 10.0, "min_samples": 20}
    fields.update(kw)
    return Guard(
        name=f"{cohort}-{signal}",
        signal=signal,
        cohort=cohort,
        threshold=float(fields["threshold"]),
        window=float(fields["window"]),
        min_samples=int(fields["min_samples"]),
    )


# ---- parsing and the pure math ---------------------------------------------------------


def test_parses_the_real_envoy_output() -> None:
    scrape = parse_scrape(CAPTURED.read_text())
    v1, v2 = scrape["tts_v1"], scrape["tts_v2"]
    assert (v1.completed, v1.errors, v1.timed) == (185, 0, 185)
    assert (v2.completed, v2.errors, v2.timed) == (15, 2, 15)
    assert v2.buckets[0] == (5.0, 0.0) and v2.buckets[-1] == (INF, 15.0)
    assert dict(v2.buckets)[300.0] == 15.0
    assert "extproc_sidecar" in scrape  # other clusters are parsed and ignored later


def test_parsing_skips_what_it_does_not_need() -> None:
    text = '# HELP x\nenvoy_cluster_upstream_rq_completed{envoy_cluster_name="a"} NaN\n'
    text += "envoy_server_live 1\ngarbage{\n"
    text += 'envoy_cluster_upstream_rq_completed{envoy_cluster_name="b"} 7\n'
    assert parse_scrape(text) == {"b": ClusterCounts(completed=7.0)}


@pytest.mark.parametrize(
    ("q", "buckets", "expected"),
    [
        # all 10 in (100, 200]: rank 9.5 of 10 -> 100 + 100 * 0.95
        (0.95, ((100.0, 0.0), (200.0, 10.0), (INF, 10.0)), 195.0),
        # 90 fast in (0, 10], 10 slow in (500, 1000]: p95 is halfway into the slow bucket
        (0.95, ((10.0, 90.0), (500.0, 90.0), (1000.0, 100.0), (INF, 100.0)), 750.0),
        (0.99, ((10.0, 90.0), (500.0, 90.0), (1000.0, 100.0), (INF, 100.0)), 950.0),
        # the first bucket starts at 0
        (0.5, ((10.0, 4.0), (INF, 4.0)), 5.0),
        # a rank in the +Inf bucket gives the highest finite bound
        (0.95, ((10.0, 1.0), (100.0, 2.0), (INF, 10.0)), 100.0),
    ],
)
def test_quantile_is_interpolated_within_its_bucket(
    q: float, buckets: tuple[tuple[float, float], ...], expected: float
) -> None:
    assert quantile_ms(q, buckets) == pytest.approx(expected)


def test_quantile_of_nothing_is_none() -> None:
    assert quantile_ms(0.95, ()) is None
    assert quantile_ms(0.95, ((10.0, 0.0), (INF, 0.0))) is None


def test_difference_and_error_rate() -> None:
    old = ClusterCounts(100.0, 1.0, ((10.0, 90.0), (INF, 100.0)))
    new = ClusterCounts(300.0, 5.0, ((10.0, 200.0), (INF, 300.0)))
    delta = difference(new, old)
    assert delta == ClusterCounts(200.0, 4.0, ((10.0, 110.0), (INF, 200.0)))
    assert error_rate(delta) == pytest.approx(0.02)
    assert error_rate(ClusterCounts()) is None


def test_counts_that_went_down_cannot_be_compared() -> None:
    old = ClusterCounts(100.0, 1.0, ((10.0, 90.0), (INF, 100.0)))
    assert difference(ClusterCounts(5.0, 0.0, ((10.0, 5.0), (INF, 5.0))), old) is None
    assert difference(ClusterCounts(200.0, 1.0, ((20.0, 150.0), (INF, 200.0))), old) is None


# ---- the Envoy source over windows -----------------------------------------------------


class Rig:
    """A fake Envoy, a fake clock and a source scraping one through the other."""

    def __init__(self, horizon: float = 10.0) -> None:
        self.envoy = FakeEnvoyStats()
        self.clock = FakeClock()
        self.source = EnvoyStatsSource(
            "http://127.0.0.1:9901/", self.clock, horizon, fetch=self.envoy.fetch
        )

    def scrape_after(self, seconds: float) -> None:
        self.clock.advance(seconds)
        asyncio.run(self.source.refresh())

    def read(self, g: Guard) -> Reading:
        return self.source.read(g)


def test_scrapes_the_admin_endpoint_with_a_filter() -> None:
    rig = Rig()
    rig.scrape_after(0)
    (url,) = rig.envoy.fetched
    assert url.startswith("http://127.0.0.1:9901/stats/prometheus?filter=")
    assert "upstream_rq_" in url and ADMIN_FILTER.startswith("^cluster")


def test_one_scrape_is_not_enough_to_judge() -> None:
    rig = Rig()
    rig.scrape_after(0)
    reading = rig.read(guard())
    assert reading.value is None and "two scrapes" in reading.detail
    assert judge(guard(), reading).verdict is Verdict.HOLD


def test_latency_and_errors_over_the_window_only() -> None:
    rig = Rig(horizon=15.0)
    rig.scrape_after(0)
    rig.envoy.serve("tts_v2", 100, latency_ms=2000, errors=50)  # old trouble ...
    rig.scrape_after(5)
    rig.envoy.serve("tts_v2", 200, latency_ms=40, errors=1)  # ... then healthy
    rig.scrape_after(10)  # t = 15: the 10 s window starts at the t = 5 scrape
    p95 = rig.read(guard(window=10.0))
    assert p95.samples == 200 and p95.value == pytest.approx(0.04875)  # 25 + 25 * 0.95 ms
    errors = rig.read(guard("error_rate", window=10.0))
    assert errors.samples == 200 and errors.value == pytest.approx(0.005)
    wide = rig.read(guard(window=15.0))  # reaches back to t = 0: the slow ones count
    assert wide.samples == 300 and wide.value == pytest.approx(1.925)  # 1500 + 500 * 85/100


def test_a_window_longer_than_the_history_uses_the_oldest_scrape() -> None:
    rig = Rig(horizon=60.0)
    rig.scrape_after(0)
    rig.envoy.serve("tts_v2", 30, latency_ms=40)
    rig.scrape_after(1)
    reading = rig.read(guard(window=60.0))
    assert reading.samples == 30 and "over 1.0s" in reading.detail


def test_too_few_samples_hold_even_far_above_the_threshold() -> None:
    rig = Rig()
    rig.scrape_after(0)
    rig.envoy.serve("tts_v2", 19, latency_ms=5000, errors=19)
    rig.scrape_after(1)
    for g in (guard(min_samples=20), guard("error_rate", threshold=0.005, min_samples=20)):
        figure = judge(g, rig.read(g))
        assert figure.verdict is Verdict.HOLD and figure.samples == 19
        assert "fewer than 20" in figure.detail


def test_no_traffic_at_all_holds() -> None:
    rig = Rig()
    rig.scrape_after(0)
    rig.scrape_after(1)
    for g in (guard(), guard("error_rate"), guard(cohort="v2-v1")):
        figure = judge(g, rig.read(g))
        assert figure.verdict is Verdict.HOLD and figure.value is None


def test_above_the_threshold_fails_and_at_or_below_passes() -> None:
    rig = Rig()
    rig.scrape_after(0)
    rig.envoy.serve("tts_v2", 95, latency_ms=100)
    rig.envoy.serve("tts_v2", 5, latency_ms=900)
    rig.scrape_after(1)
    assert rig.read(guard()).value == pytest.approx(0.1)  # rank 95: the top of (50, 100]
    assert judge(guard(threshold=0.1), rig.read(guard())).verdict is Verdict.PASS
    assert judge(guard(threshold=0.099), rig.read(guard())).verdict is Verdict.FAIL
    slow = guard("latency_p99", threshold=0.8)
    assert rig.read(slow).value == pytest.approx(0.96)  # rank 99: 800 + 200 * 4/5
    assert judge(slow, rig.read(slow)).verdict is Verdict.FAIL


def test_v2_minus_v1_compares_the_cohorts() -> None:
    rig = Rig()
    rig.scrape_after(0)
    rig.envoy.serve("tts_v1", 500, latency_ms=40, errors=1)
    rig.envoy.serve("tts_v2", 50, latency_ms=450, errors=2)
    rig.scrape_after(1)
    gap = rig.read(guard(cohort="v2-v1"))
    assert gap.samples == 50  # the smaller cohort counts
    assert gap.value == pytest.approx(0.495 - 0.04875)
    errors = rig.read(guard("error_rate", cohort="v2-v1"))
    assert errors.value == pytest.approx(0.04 - 0.002)
    assert judge(guard("error_rate", "v2-v1", threshold=0.005), errors).verdict is Verdict.FAIL


def test_v2_minus_v1_holds_without_v1_traffic() -> None:
    rig = Rig()
    rig.scrape_after(0)
    rig.envoy.serve("tts_v2", 500, latency_ms=450)
    rig.scrape_after(1)
    reading = rig.read(guard(cohort="v2-v1"))
    assert reading.value is None and reading.samples == 0
    assert judge(guard(cohort="v2-v1"), reading).verdict is Verdict.HOLD


def test_an_envoy_restart_starts_the_windows_over() -> None:
    rig = Rig()
    rig.scrape_after(0)
    rig.envoy.serve("tts_v2", 100, latency_ms=40)
    rig.scrape_after(1)
    rig.envoy.restart()
    rig.envoy.serve("tts_v2", 10, latency_ms=40)
    rig.scrape_after(1)
    assert rig.read(guard()).value is None  # one scrape since the restart
    rig.envoy.serve("tts_v2", 30, latency_ms=40)
    rig.scrape_after(1)
    assert rig.read(guard()).samples == 30


def test_an_unreachable_envoy_holds_until_it_answers_again() -> None:
    rig = Rig()
    rig.scrape_after(0)
    rig.envoy.serve("tts_v2", 100, latency_ms=40)
    rig.scrape_after(1)
    working = rig.source._fetch

    def refuse(url: str, timeout: float) -> bytes:
        raise ConnectionRefusedError("connection refused")

    rig.source._fetch = refuse
    rig.scrape_after(1)
    reading = rig.read(guard())
    assert reading.value is None and "unreachable" in reading.detail
    rig.source._fetch = working
    rig.scrape_after(1)
    assert rig.read(guard()).samples == 100


def test_the_ring_of_scrapes_stays_bounded() -> None:
    rig = Rig(horizon=10.0)
    for _ in range(1000):
        rig.envoy.serve("tts_v2", 1, latency_ms=40)
        rig.scrape_after(0.5)
    assert len(rig.source._ring) <= 10.0 / 0.5 + 2
    assert rig.read(guard(window=10.0)).samples == 20


# ---- judging and PromQL answers --------------------------------------------------------


def test_overall_verdict() -> None:
    g = guard(min_samples=1)
    passed, held = judge(g, Reading(0.1, 5)), judge(g, Reading(None, 0))
    failed = judge(g, Reading(1.0, 5))
    assert overall([]) is Verdict.PASS
    assert overall([passed, passed]) is Verdict.PASS
    assert overall([passed, held]) is Verdict.HOLD
    assert overall([held, failed, passed]) is Verdict.FAIL


def test_evaluate_keeps_policy_order_and_json_figures() -> None:
    rig = Rig()
    rig.scrape_after(0)
    rig.envoy.serve("tts_v2", 100, latency_ms=40, errors=2)
    rig.scrape_after(1)
    guards = [guard(), guard("error_rate", threshold=0.005)]
    result = evaluate(guards, {"envoy": rig.source}, at=123.0)
    assert result.verdict is Verdict.FAIL and result.at == 123.0
    figures = result.guards_json()
    assert list(figures) == ["v2-latency_p95", "v2-error_rate"]
    assert figures["v2-error_rate"] == {
        "signal": "error_rate",
        "cohort": "v2",
        "value": pytest.approx(0.02),
        "samples": 100,
        "threshold": 0.005,
        "window": 10.0,
        "min_samples": 20,
        "verdict": "fail",
        "detail": "over 1.0s",
    }


@pytest.mark.parametrize(
    ("answer", "value", "samples", "detail"),
    [
        (
            {
                "status": "success",
                "data": {
                    "resultType": "vector",
                    "result": [
                        {"metric": {"model": "a"}, "value": [1, "0.1"]},
                        {"metric": {"model": "b"}, "value": [1, "0.3"]},
                    ],
                },
            },
            0.3,
            2,
            "2 series",
        ),
        ({"status": "success", "data": {"resultType": "scalar", "result": [1, "7"]}}, 7.0, 1, ""),
        ({"status": "success", "data": {"resultType": "vector", "result": []}}, None, 0, "no data"),
        (
            {
                "status": "success",
                "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1, "NaN"]}]},
            },
            None,
            0,
            "no data",
        ),
        (
            {"status": "error", "errorType": "bad_data", "error": "parse error"},
            None,
            0,
            "query failed: bad_data: parse error",
        ),
        (
            {"status": "success", "data": {"resultType": "matrix", "result": []}},
            None,
            0,
            "want an instant vector",
        ),
    ],
)
def test_prometheus_answers(
    answer: dict[str, object], value: float | None, samples: int, detail: str
) -> None:
    reading = reading_of(answer)  # type: ignore[arg-type]
    assert (reading.value, reading.samples) == (value, samples)
    assert detail in reading.detail


def test_a_prometheus_that_cannot_be_reached_reads_as_no_data() -> None:
    def refuse(url: str, timeout: float) -> bytes:
        raise ConnectionRefusedError("refused")

    source = PrometheusSource("http://127.0.0.1:1", ["up"], fetch=refuse)
    asyncio.run(source.refresh())
    promql = Guard("q", "promql", "v2", 0.5, 60.0, 1, query="up")
    reading = source.read(promql)
    assert reading.value is None and "unreachable" in reading.detail
    assert judge(promql, reading).verdict is Verdict.HOLD
