"""PromQL guards against a real Prometheus (the Debian ``prometheus`` binary, scraping itself):
values, no data, NaN, query errors and an unreachable server, read through the HTTP API as
the controller reads them, and a controller rolling back on a PromQL breach.

No Envoy here: the queries are constant expressions and Prometheus' own series, so the test
is about the API and the judging, not about traffic (test_rollout_guards covers that).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from extproc.rollout.clock import FakeClock
from extproc.rollout.controller import Controller
from extproc.rollout.guards.judge import judge
from extproc.rollout.guards.signals import PrometheusSource
from extproc.rollout.policy import Guard, parse_policy
from extproc.rollout.state import Phase, Verdict
from extproc.rollout.stores.state_store import FileStateStore
from extproc.stack.processes import free_port, wait_until
from tests.support.prometheus import running_prometheus


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prometheus on a free loopback port, scraping itself; its base URL."""
    with running_prometheus(tmp_path_factory.mktemp("prometheus"), [], scrape_self=True) as url:
        yield url


def promql(query: str, threshold: float = 0.2, min_samples: int = 1) -> Guard:
    return Guard("q", "promql", "v2", threshold, 60.0, min_samples, query=query)


def read(url: str, guard: Guard) -> tuple[float | None, int, str, Verdict]:
    source = PrometheusSource(url, [guard.query])
    asyncio.run(source.refresh())
    reading = source.read(guard)
    return reading.value, reading.samples, reading.detail, judge(guard, reading).verdict


@pytest.mark.parametrize(
    ("query", "value", "samples", "verdict"),
    [
        ("vector(0.5)", 0.5, 1, Verdict.FAIL),
        ("vector(0.1)", 0.1, 1, Verdict.PASS),
        ("scalar(vector(0.3))", 0.3, 1, Verdict.FAIL),
        ("max(vector(0.1)) + 1", 1.1, 1, Verdict.FAIL),
    ],
)
def test_values_are_judged_against_the_threshold(
    prometheus: str, query: str, value: float, samples: int, verdict: Verdict
) -> None:
    got = read(prometheus, promql(query))
    assert (got[0], got[1], got[3]) == (pytest.approx(value), samples, verdict)


def test_the_worst_series_counts_and_each_series_is_a_sample(prometheus: str) -> None:
    series = 'label_replace(vector({v}), "model", "{m}", "", "")'
    query = f"{series.format(v=0.1, m='a')} or {series.format(v=0.9, m='b')}"
    value, samples, detail, verdict = read(prometheus, promql(query, min_samples=2))
    assert (value, samples, detail, verdict) == (0.9, 2, "2 series", Verdict.FAIL)
    assert read(prometheus, promql(query, min_samples=3))[3] is Verdict.HOLD


@pytest.mark.parametrize(
    ("query", "detail"),
    [
        ("tts_metric_that_does_not_exist", "no data"),
        ("vector(0) / 0", "no data"),  # NaN: e.g. an error ratio over no traffic
        ("sum(", "query failed: bad_data:"),
        ("up[1m]", "query gave a matrix"),
    ],
)
def test_no_data_nan_and_errors_hold(prometheus: str, query: str, detail: str) -> None:
    value, samples, got_detail, verdict = read(prometheus, promql(query))
    assert (value, samples, verdict) == (None, 0, Verdict.HOLD)
    assert got_detail.startswith(detail), got_detail


def test_a_real_series_once_scraped(prometheus: str) -> None:
    guard = promql('up{job="self"}', threshold=0.5)
    wait_until(lambda: read(prometheus, guard)[0] is not None, "the first self-scrape", 15)
    assert read(prometheus, guard)[::3] == (1.0, Verdict.FAIL)


def test_an_unreachable_prometheus_holds() -> None:
    value, _, detail, verdict = read(f"http://127.0.0.1:{free_port()}", promql("vector(1)"))
    assert (value, verdict) == (None, Verdict.HOLD) and "unreachable" in detail


def test_a_controller_rolls_back_on_a_promql_breach(prometheus: str, tmp_path: Path) -> None:
    text = b"""policy:
  rollout: r
  initial_share: 10%
  guards:
    - {name: mos-drop, signal: promql, query: 'vector(0.35)', threshold: 0.2, window: 5m}
"""
    policy = parse_policy("policy.yaml", text)
    source = PrometheusSource(prometheus, [g.query for g in policy.guards])
    store = FileStateStore(tmp_path / "state.json")
    controller = Controller(policy, store, {"promql": source}, clock=FakeClock())
    controller.apply("start", "op")
    asyncio.run(controller.check())
    state = store.read()
    assert state is not None and state.phase is Phase.ROLLED_BACK
    figures = store.audit(1)[0]["guards"]["mos-drop"]
    assert (figures["value"], figures["verdict"], figures["signal"]) == (0.35, "fail", "promql")
