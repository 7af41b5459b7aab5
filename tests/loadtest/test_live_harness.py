"""The harness's live-sampling pieces: counters read from the sidecar's exposition, per-window
deltas, and the same-run comparison table (pure; the real runs are in loadtest/RESULTS-live.md)."""

from __future__ import annotations

from loadtest import live_cost
from loadtest.harness import live
from loadtest.harness.setups import SETUPS

EXPOSITION = """\
# HELP tts_quality_live_sampled_total requests asked for their bodies
# TYPE tts_quality_live_sampled_total counter
tts_quality_live_sampled_total{cohort="v1"} 7.0
tts_quality_live_sampled_total{cohort="v2"} 3.0
tts_quality_live_sampled_created{cohort="v1"} 1.7e9
tts_quality_live_skipped_total{cohort="v1",reason="rate_cap"} 40.0
tts_quality_live_skipped_total{cohort="v2",reason="queue_full"} 2.0
tts_quality_live_dropped_total{reason="queue_full"} 1.0
tts_quality_live_scorer_ready 1.0
tts_quality_live_mos_count{cohort="v1"} 5.0
decisions_total{cohort="v1"} 99.0
"""


def test_live_counters_are_summed_over_their_labels() -> None:
    assert live.live_counters(EXPOSITION) == {
        "sampled_total": 10.0,
        "skipped_total": 42.0,
        "dropped_total": 1.0,
        "scorer_ready": 1.0,
    }


def test_a_window_reports_how_much_each_counter_grew() -> None:
    before = {"sampled_total": 10.0, "skipped_total": 42.0, "scored_total": 0.0}
    after = {"sampled_total": 15.0, "skipped_total": 42.0, "scored_total": 4.0, "scorer_ready": 1}
    assert live.window_figures(before, after) == {
        "live_sampled": 5.0,
        "live_skipped": 0.0,
        "live_scored": 4.0,
    }


def test_every_live_setup_is_a_setup_of_the_harness() -> None:
    assert set(live.LIVE_SETUPS) <= set(SETUPS) and set(live.LIVE_SETUPS) >= live.SCORER_APART
    for env in live.LIVE_SETUPS.values():
        assert float(env["EXTPROC_SAMPLE_RATE"]) > 0


def _window(rps: float, sampled: float = 0.0) -> dict[str, float]:
    return {
        "saturation.rps": rps,
        "saturation.wall_s": 5.0,
        "saturation.processor_cpu_us_per_req": 30.0 + sampled / 100,
        "saturation.envoy_cpu_us_per_req": 90.0,
        "saturation.live_sampled": sampled,
        "saturation.live_skipped": 0.0,
        "saturation.live_dropped": 0.0,
        "rate_1000.p50_ms": 1.0,
        "rate_1000.p99_ms": 2.0,
    }


def test_the_comparison_table_is_per_round_against_the_same_rounds_reference() -> None:
    rounds = [
        {"setups": {"sidecar": _window(8000), "sampled": _window(7800, 50)}},
        {"setups": {"sidecar": _window(7000), "sampled": _window(7000, 50)}},
        {"setups": {"sidecar": _window(9000), "sampled": _window(8910, 100)}},
    ]
    table = live_cost.table({"rounds": rounds})
    assert "| sampled vs sidecar: saturation ratio | 0.975, 1.000, 0.990 | 0.990 |" in table
    assert (
        "| sampled vs sidecar: processor CPU per request (µs) | +0.5, +0.5, +1.0 | +0.5 |" in table
    )
    assert "| sampled: sampled per second at saturation | 10.0, 10.0, 20.0 | 10.0 |" in table
