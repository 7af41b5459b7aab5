"""Live audio guards (``source: live``): the sidecars' ``tts_quality_live_*`` figures parsed,
windowed (differences of cumulative counts between checks), added over sidecars and judged:
too few samples or any sidecar that cannot be read holds, never passes nor fails."""

from __future__ import annotations

import asyncio
import http.client
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest

from extproc.live.metrics import LiveMetrics
from extproc.rollout.admin import wire
from extproc.rollout.admin.table import render_status
from extproc.rollout.clock import FakeClock
from extproc.rollout.controller import Controller
from extproc.rollout.controller_command import build_sources
from extproc.rollout.guards.judge import evaluate, family, judge
from extproc.rollout.guards.live_figures import add_up, difference, live_reading, parse_live
from extproc.rollout.guards.live_source import LiveSource, parse_urls
from extproc.rollout.policy import Guard, parse_policy
from extproc.rollout.state import Verdict
from extproc.rollout.stores.state_store import FileStateStore

A, B = "http://10.0.0.1:9464/metrics", "http://10.0.0.2:9464/metrics"


def guard(signal: str, cohort: str = "v2", threshold: float = 0.3, **kw: Any) -> Guard:
    return Guard(
        name=f"live-{signal}-{cohort}",
        signal=signal,
        cohort=cohort,
        threshold=threshold,
        window=float(kw.get("window", 60.0)),
        min_samples=int(kw.get("min_samples", 3)),
        source="live",
    )


class Sidecar:
    """A sidecar's live metrics (the real declarations of extproc/live/metrics.py)."""

    def __init__(self) -> None:
        self.metrics = LiveMetrics()

    def score(self, cohort: str, n: int = 1, **figures: Any) -> None:
        for _ in range(n):
            self.metrics.record_scored(cohort, {"valid": True, **figures}, 0.1, True)

    def invalid(self, cohort: str, n: int = 1) -> None:
        for _ in range(n):
            self.metrics.record_scored(cohort, {"valid": False}, 0.0, True)

    def exposition(self) -> bytes:
        return generate_latest(self.metrics.registry)


class Fleet:
    """Sidecars by URL, served to a LiveSource through its ``fetch``."""

    def __init__(self, urls: Sequence[str]) -> None:
        self.sidecars = {url: Sidecar() for url in urls}
        self.down: dict[str, Exception] = {}
        self.pages: dict[str, bytes] = {}

    def fetch(self, url: str, timeout: float) -> bytes:
        if url in self.down:
            raise self.down[url]
        return self.pages.get(url) or self.sidecars[url].exposition()

    def restart(self, url: str) -> None:
        self.sidecars[url] = Sidecar()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def source_of(fleet: Fleet, clock: FakeClock, horizon: float = 60.0) -> LiveSource:
    return LiveSource(tuple(fleet.sidecars), clock, horizon, fetch=fleet.fetch)


def check(source: LiveSource, clock: FakeClock, after: float = 10.0) -> None:
    clock.advance(after)
    asyncio.run(source.refresh())


# ---- parsing: the names the sidecar really exports ----------------------------------------


def test_reads_what_the_sidecar_declares() -> None:
    sidecar = Sidecar()
    sidecar.score("v2", 2, mos=2.0, silence_ratio=0.9, clipping_ratio=0.0, wer=0.5)
    sidecar.score("v1", 1, mos=3.5, silence_ratio=0.1)
    sidecar.invalid("v2")
    series = parse_live(sidecar.exposition().decode())
    assert series[("v2", "valid", "")] == 2 and series[("v2", "invalid", "")] == 1
    assert series[("v2", "mos_count", "")] == 2 and series[("v2", "mos_sum", "")] == 4.0
    assert series[("v1", "silence_ratio_sum", "")] == pytest.approx(0.1)
    assert series[("v1", "wer_count", "")] == 0
    assert {quantity for _, quantity, _ in series} == {
        "valid", "invalid", "mos_count", "mos_sum", "wer_count", "wer_sum",
        "silence_ratio_count", "silence_ratio_sum", "clipping_ratio_count", "clipping_ratio_sum",
    }  # fmt: skip


def test_parsing_keeps_other_labels_apart_and_skips_the_rest() -> None:
    text = "\n".join(
        [
            'tts_quality_live_mos_count{cohort="v2",worker="0"} 3.0',
            'tts_quality_live_mos_count{cohort="v2",worker="1"} 4.0',
            'tts_quality_live_mos_bucket{cohort="v2",le="2.0"} 1.0',
            'tts_quality_live_mos_created{cohort="v2"} 1.7e9',
            'tts_quality_live_dropped_total{reason="queue_full"} 9.0',
            'tts_quality_live_mos_sum{cohort="v2"} NaN',
            "tts_quality_live_scorer_cpu_seconds_total 2.0",
            'tts_canary_decisions_total{cohort="v2"} 100.0',
            "garbage{",
        ]
    )
    series = parse_live(text)
    assert series == {("v2", "mos_count", "worker=0"): 3.0, ("v2", "mos_count", "worker=1"): 4.0}
    assert add_up([series]) == {("v2", "mos_count"): 7.0}
    assert parse_live("tts_canary_decisions_total 1\n") == {}


def test_difference_skips_series_the_older_scrape_lacks_and_refuses_a_count_that_went_down() -> (
    None
):
    old = {("v2", "valid", "worker=0"): 5.0}
    # worker 1 did not answer the older scrape: its cumulative 40 is not this window's
    new = {("v2", "valid", "worker=0"): 8.0, ("v2", "valid", "worker=1"): 40.0}
    assert difference(new, old) == {("v2", "valid", "worker=0"): 3.0}
    assert difference(old, {("v2", "valid", "worker=0"): 6.0}) is None


# ---- readings: cohort means, the v2-v1 gap, the invalid rate --------------------------------


def totals(**cohorts: Mapping[str, float]) -> dict[tuple[str, str], float]:
    return {(c, q): v for c, values in cohorts.items() for q, v in values.items()}


def test_cohort_mean_and_gap() -> None:
    window = totals(
        v2={"mos_count": 4, "mos_sum": 8.8, "silence_ratio_count": 4, "silence_ratio_sum": 3.6},
        v1={"mos_count": 5, "mos_sum": 17.5, "silence_ratio_count": 5, "silence_ratio_sum": 0.5},
    )
    floor = live_reading(guard("mos", "v2", 2.8), window)
    assert (floor.value, floor.samples) == (pytest.approx(2.2), 4)
    drop = live_reading(guard("mos", "v2-v1", 0.2), window, "from 1 sidecar over 60.0s")
    assert (drop.value, drop.samples) == (pytest.approx(3.5 - 2.2), 4)  # v1 - v2: the drop
    assert drop.detail == "v2 2.2 (4), v1 3.5 (5) from 1 sidecar over 60.0s"
    silence = live_reading(guard("silence_ratio", "v2-v1"), window)
    assert silence.value == pytest.approx(0.9 - 0.1)  # v2 - v1


def test_invalid_rate_counts_every_scored_answer() -> None:
    window = totals(v2={"valid": 6, "invalid": 2}, v1={"valid": 10, "invalid": 0})
    rate = live_reading(guard("invalid_audio_rate", "v2", 0.1), window)
    assert (rate.value, rate.samples) == (0.25, 8)
    gap = live_reading(guard("invalid_audio_rate", "v2-v1", 0.1), window)
    assert (gap.value, gap.samples) == (0.25, 8)


def test_no_samples_is_no_value() -> None:
    window = totals(v1={"mos_count": 5, "mos_sum": 17.5})
    assert live_reading(guard("mos", "v2"), window).value is None
    gap = live_reading(guard("mos", "v2-v1"), window)
    assert (gap.value, gap.samples, gap.detail) == (None, 0, "v2 - (0), v1 3.5 (5)")


@pytest.mark.parametrize(
    ("signal", "cohort", "threshold", "v2_mean", "samples", "verdict"),
    [
        ("mos", "v2", 2.8, 2.2, 4, Verdict.FAIL),  # a floor: breach below
        ("mos", "v2", 2.8, 3.1, 4, Verdict.PASS),
        ("mos", "v2", 2.8, 2.2, 2, Verdict.HOLD),  # fewer than min_samples (3)
        ("silence_ratio", "v2", 0.3, 0.9, 4, Verdict.FAIL),
        ("silence_ratio", "v2", 0.3, 0.1, 4, Verdict.PASS),
        ("silence_ratio", "v2", 0.3, 0.9, 0, Verdict.HOLD),
    ],
)
def test_judged_like_every_guard(
    signal: str, cohort: str, threshold: float, v2_mean: float, samples: int, verdict: Verdict
) -> None:
    name = "mos" if signal == "mos" else signal
    window = totals(v2={f"{name}_count": samples, f"{name}_sum": v2_mean * samples})
    g = guard(signal, cohort, threshold)
    figure = judge(g, live_reading(g, window))
    assert figure.verdict is verdict
    assert figure.to_json()["source"] == "live"


# ---- the source: windows, several sidecars, what holds ---------------------------------------


def test_a_window_is_the_difference_between_two_checks(clock: FakeClock) -> None:
    fleet = Fleet([A])
    source = source_of(fleet, clock)
    sidecar = fleet.sidecars[A]
    g = guard("silence_ratio", "v2", window=20.0, min_samples=1)
    check(source, clock)
    assert source.read(g).detail == "waiting for two scrapes of 1 sidecar(s)"
    sidecar.score("v2", 4, silence_ratio=0.0)  # t 10..20
    check(source, clock)
    sidecar.score("v2", 2, silence_ratio=1.0)  # t 20..30
    check(source, clock)
    sidecar.score("v2", 2, silence_ratio=1.0)  # t 30..40
    check(source, clock)
    reading = source.read(g)  # t 20..40: the 4 silent answers only
    assert (reading.value, reading.samples) == (1.0, 4)
    assert reading.detail == "4 live v2 samples from 1 sidecar over 20.0s"
    longer = source.read(guard("silence_ratio", "v2", window=60.0, min_samples=1))
    assert (longer.value, longer.samples) == (0.5, 8)  # the ring is younger than 60 s


def test_sidecars_add_up(clock: FakeClock) -> None:
    fleet = Fleet([A, B])
    source = source_of(fleet, clock)
    check(source, clock)
    fleet.sidecars[A].score("v2", 3, mos=2.0)
    fleet.sidecars[A].score("v1", 1, mos=3.0)
    fleet.sidecars[B].score("v2", 1, mos=4.0)
    fleet.sidecars[B].score("v1", 3, mos=4.0)
    check(source, clock)
    reading = source.read(guard("mos", "v2-v1", 0.2))
    assert reading.value == pytest.approx(3.75 - 2.5)
    assert reading.samples == 4
    assert reading.detail == "v2 2.5 (4), v1 3.75 (4) from 2 sidecars over 10.0s"


def test_any_sidecar_that_cannot_be_read_holds_every_live_guard(clock: FakeClock) -> None:
    fleet = Fleet([A, B])
    source = source_of(fleet, clock)
    g = guard("silence_ratio", "v2", min_samples=1)
    check(source, clock)
    fleet.sidecars[A].score("v2", 5, silence_ratio=0.0)
    fleet.down[B] = ConnectionRefusedError(111, "Connection refused")
    check(source, clock)
    figure = judge(g, source.read(g))
    assert figure.verdict is Verdict.HOLD and figure.value is None
    assert figure.detail == f"sidecar {B} unreachable: [Errno 111] Connection refused"
    del fleet.down[B]
    fleet.pages[B] = b'tts_canary_decisions_total{cohort="v2"} 3.0\n'  # sampling off
    check(source, clock)
    assert source.read(g).detail == (
        f"sidecar {B} has no live figures (is EXTPROC_SAMPLE_RATE above 0?)"
    )
    del fleet.pages[B]
    fleet.down[A] = http.client.IncompleteRead(b"tts_quality_live_")  # not an OSError
    check(source, clock)
    assert source.read(g).detail.startswith(f"sidecar {A} unreachable: IncompleteRead(")
    del fleet.down[A]
    check(source, clock)
    assert judge(g, source.read(g)).verdict is Verdict.PASS  # both read again


def test_a_restarted_sidecar_starts_its_window_over(clock: FakeClock) -> None:
    fleet = Fleet([A])
    source = source_of(fleet, clock)
    g = guard("silence_ratio", "v2", min_samples=1)
    fleet.sidecars[A].score("v2", 5, silence_ratio=1.0)
    check(source, clock)
    fleet.restart(A)
    fleet.sidecars[A].score("v2", 1, silence_ratio=0.0)
    check(source, clock)
    assert source.read(g).value is None  # one scrape since the restart
    fleet.sidecars[A].score("v2", 2, silence_ratio=0.0)
    check(source, clock)
    reading = source.read(g)
    assert (reading.value, reading.samples) == (0.0, 2)


def test_a_worker_missing_from_one_scrape_adds_no_spike(clock: FakeClock) -> None:
    """``--workers``: the supervisor leaves a worker that did not answer out of a scrape."""

    def page(**workers: tuple[float, float]) -> bytes:
        lines = []
        for worker, (count, total) in workers.items():
            labels = f'cohort="v2",worker="{worker[1:]}"'
            lines.append(f"tts_quality_live_silence_ratio_count{{{labels}}} {count}")
            lines.append(f"tts_quality_live_silence_ratio_sum{{{labels}}} {total}")
        return "\n".join(lines).encode()

    fleet = Fleet([A])
    source = source_of(fleet, clock)
    g = guard("silence_ratio", "v2", window=10.0, min_samples=1)
    for workers in (
        {"w0": (10.0, 1.0), "w1": (10.0, 1.0)},
        {"w0": (12.0, 1.2)},  # w1 did not answer this scrape
        {"w0": (12.0, 1.2), "w1": (14.0, 1.4)},
    ):
        fleet.pages[A] = page(**workers)
        check(source, clock)
    assert source.read(g).value is None  # no new samples in the last 10 s, not w1's 14
    wider = source.read(guard("silence_ratio", "v2", window=20.0, min_samples=1))
    assert (wider.samples, wider.value) == (6, pytest.approx(0.1))


def test_evaluate_routes_live_guards_to_the_live_source(clock: FakeClock) -> None:
    fleet = Fleet([A])
    live = source_of(fleet, clock)
    check(live, clock)
    fleet.sidecars[A].score("v2", 5, silence_ratio=1.0)
    fleet.sidecars[A].score("v1", 5, silence_ratio=0.0)
    check(live, clock)
    g = guard("silence_ratio", "v2-v1", 0.3)
    assert family(g) == "live"
    evaluation = evaluate([g], {"live": live}, clock.now())
    assert evaluation.verdict is Verdict.FAIL
    assert evaluation.figures[0].value == 1.0


# ---- settings -----------------------------------------------------------------------------


POLICY = b"""policy:
  rollout: r
  initial_share: 10%
  guards:
    - {name: live-mos, signal: mos, cohort: v2-v1, threshold: 0.2, window: 2m, source: live}
    - {name: probe-mos, signal: mos, cohort: v2-v1, threshold: 0.2, window: 1m}
"""


def test_controller_builds_a_live_source_from_the_url_list(clock: FakeClock) -> None:
    policy = parse_policy("p.yaml", POLICY)
    assert [g.source for g in policy.guards] == ["live", "probes"]
    sources = build_sources(policy, clock, "", "", "http://127.0.0.1:9470", f"{A}, {B}")
    live = sources["live"]
    assert isinstance(live, LiveSource) and live.urls == (A, B)
    assert set(sources) == {"live", "quality"}
    with pytest.raises(ValueError, match="--live-metrics"):
        build_sources(policy, clock, "", "", "http://127.0.0.1:9470", "")


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("", "no sidecar metrics URL"),
        ("10.0.0.1:9464", "'10.0.0.1:9464' is not an http(s) URL of a sidecar's /metrics"),
        (f"{A},{A}", "a sidecar metrics URL is listed twice (its samples would count twice)"),
    ],
)
def test_bad_url_lists_are_refused(text: str, error: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_urls(text)
    assert str(info.value) == error


# ---- in the controller: rollback, status ---------------------------------------------------

CONTROLLED = b"""policy:
  rollout: gpt-sovits-v2
  initial_share: 10%
  guards:
    - {name: live-silence, signal: silence_ratio, cohort: v2-v1, threshold: 30%, window: 30s,
       min_samples: 4, source: live}
    - {name: live-mos, signal: mos, cohort: v2, threshold: 2.8, window: 30s, min_samples: 4,
       source: live}
"""


def test_controller_rolls_back_on_a_live_guard_and_status_shows_it(
    tmp_path: Path, clock: FakeClock
) -> None:
    fleet = Fleet([A, B])
    live = source_of(fleet, clock, horizon=30.0)
    policy = parse_policy("policy.yaml", CONTROLLED)
    controller = Controller(policy, FileStateStore(tmp_path / "state.json"), {"live": live},
                            clock=clock)  # fmt: skip
    controller.apply("start", "alice")

    def seconds(n: int, v2_silence: float, v2_mos: float) -> None:
        for _ in range(n):
            for url in (A, B):
                fleet.sidecars[url].score("v2", 1, silence_ratio=v2_silence, mos=v2_mos)
                fleet.sidecars[url].score("v1", 1, silence_ratio=0.1, mos=3.5)
            clock.advance(1)
            asyncio.run(controller.check())

    seconds(1, 0.1, 3.4)
    first = controller.status()["guards"]
    assert {f["verdict"] for f in first.values()} == {"hold"}  # one scrape: waiting
    seconds(40, 0.1, 3.4)  # healthy: passes, never fails
    assert controller.status()["verdict"] == "pass"
    assert controller.status()["phase"] == "ramping"
    seconds(20, 1.0, 2.1)  # v2 turned silent
    status = wire.status_json(wire.status_message(controller.status()))
    assert status["phase"] == "rolled_back"
    rollback = status["transitions"][-1]
    assert rollback["reason"].startswith("guard breach: live-")
    (silence,) = [g for g in status["guards"] if g["name"] == "live-silence"]
    assert silence["source"] == "live" and silence["samples"] >= 4
    assert silence["detail"].startswith("v2 ") and "from 2 sidecars over 30.0s" in silence["detail"]
    text = render_status(status).splitlines()
    (row,) = [line for line in text if line.strip().startswith("live-silence")]
    assert "silence_ratio (live)" in row and "v2-v1" in row and "fail" in row
