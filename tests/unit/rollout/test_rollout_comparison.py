"""Compare guards in the controller with a fake clock and a fake Envoy: a v2 slower than v1
but under the absolute threshold is rolled back with the test's figures in the audit entry;
identical cohorts ramp to the end; a new stage or an Envoy restart starts the test over; too
few samples hold."""

from __future__ import annotations

import asyncio
import itertools
import math
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from extproc.rollout.admin import wire
from extproc.rollout.admin.table import render_status
from extproc.rollout.compare.sequential import Running
from extproc.rollout.controller import Controller
from extproc.rollout.guards.comparison import Comparisons, LookState, judge_counts
from extproc.rollout.guards.envoy_stats import ClusterCounts
from extproc.rollout.policy import parse_policy
from extproc.rollout.state import Phase, Verdict
from tests.support.comparison_rig import POLICY, Rig


def test_v2_20_percent_slower_under_the_threshold_is_rolled_back_by_the_comparison(
    tmp_path: Path,
) -> None:
    rig = Rig(tmp_path)
    rig.controller.apply("start", "alice")
    rig.traffic(120, v2_scale=1.2)  # p95 of v2 ~ 490 ms: far under 800 ms
    assert rig.phase() is Phase.ROLLED_BACK
    entry = rig.store.audit()[-1]
    assert entry["reason"] == "guard breach: v2-vs-v1"
    compare = entry["guards"]["v2-vs-v1"]
    assert compare["verdict"] == "fail" and entry["guards"]["v2-p95"]["verdict"] == "pass"
    assert compare["p_value"] <= 0.01 and compare["e_value"] >= 100
    assert 0.1 < compare["effect_low"] < compare["value"] < compare["effect_high"]
    assert compare["samples_v2"] >= 100 and compare["samples_v1"] >= 100
    assert compare["metric"] == "latency" and compare["alpha"] == 0.01
    assert compare["threshold"] == 0.1 and compare["window"] > 0


def test_identical_cohorts_ramp_to_the_end_without_a_rollback(tmp_path: Path) -> None:
    rig = Rig(tmp_path, step="60s")
    rig.controller.apply("start", "alice")
    for _ in range(12):
        rig.traffic(70, per_second=10, every=5)
        if rig.phase() is not Phase.RAMPING:
            break
    assert rig.phase() is Phase.COMPLETED
    reasons = [t["reason"] for t in rig.store.audit(100)]
    assert "ramp complete" in reasons and not any("breach" in r for r in reasons)


def test_too_few_samples_hold_and_a_new_stage_starts_over(tmp_path: Path) -> None:
    rig = Rig(tmp_path, step="30s")
    rig.controller.apply("start", "alice")
    rig.traffic(3, v2_scale=1.5, per_second=10)  # 30 requests: far too few
    figure = rig.controller.status()["guards"]["v2-vs-v1"]
    assert figure["verdict"] == "hold" and rig.phase() is Phase.RAMPING
    assert "fewer than 100" in figure["detail"] or "stage started" in figure["detail"]
    rig.traffic(40, per_second=10)
    state = rig.store.read()
    assert state is not None and state.stage == 2
    figure = rig.controller.status()["guards"]["v2-vs-v1"]
    assert figure["samples_v2"] < 40 * 10  # counted from the new stage only


def test_an_envoy_restart_starts_the_test_over(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.controller.apply("start", "alice")
    rig.traffic(20)
    assert rig.controller.status()["guards"]["v2-vs-v1"]["verdict"] == "pass"
    rig.envoy.restart()
    rig.traffic(1)
    figure = rig.controller.status()["guards"]["v2-vs-v1"]
    assert figure["verdict"] == "hold" and "stage started" in figure["detail"]


def test_a_source_without_cohort_counts_holds() -> None:
    policy = parse_policy("policy.yaml", POLICY.format(step="2h").encode())
    guard = policy.guards[1]
    figure = Comparisons().judge(guard, object(), "ramping/1/1000", 0.0)
    assert figure.verdict.value == "hold" and figure.metric == "latency"


def test_controller_status_shows_the_comparison_figures(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.controller.apply("start", "alice")
    rig.traffic(30)
    guards = rig.controller.status()["guards"]
    assert guards["v2-vs-v1"]["verdict"] == "pass" and guards["v2-vs-v1"]["p_value"] > 0.01
    assert guards["errors-vs-v1"]["verdict"] == "pass"  # 600 each, no errors: no evidence
    assert isinstance(rig.controller, Controller)


def test_admin_api_and_status_table_show_the_comparison(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.controller.apply("start", "alice")
    rig.traffic(120, v2_scale=1.2)
    status = wire.status_json(wire.status_message(rig.controller.status()))
    (figure,) = [g for g in status["guards"] if g["name"] == "v2-vs-v1"]
    compare = figure["compare"]
    assert figure["verdict"] == "fail" and figure["signal"] == "compare"
    assert compare["metric"] == "latency" and compare["p_value"] <= 0.01
    assert 0.1 < compare["effect_low"] < figure["value"] < compare["effect_high"]
    assert compare["samples_v2"] >= 100 and compare["samples_v1"] >= 100
    rollback = status["transitions"][-1]
    assert any(g.get("compare") for g in rollback["guards"])  # the audit entry keeps them
    text = render_status(status)
    assert "comparisons  v2 against v1 over the stage" in text
    (row,) = [line for line in text.splitlines() if line.strip().startswith("v2-vs-v1")]
    assert "latency" in row and "99%" in row and "fail" in row and "(fail <= 0.01)" in row


def test_v2_erring_four_times_as_often_is_rolled_back_by_the_error_comparison(
    tmp_path: Path,
) -> None:
    rig = Rig(tmp_path)
    rig.controller.apply("start", "alice")
    for _ in range(60):  # v1 1 error in 200, v2 4 in 200 (2 %: under no threshold here)
        rig.envoy.serve("tts_v1", 199, latency_ms=250)
        rig.envoy.serve("tts_v1", 1, latency_ms=250, errors=1)
        rig.envoy.serve("tts_v2", 196, latency_ms=250)
        rig.envoy.serve("tts_v2", 4, latency_ms=250, errors=4)
        rig.clock.advance(1)
        asyncio.run(rig.controller.check())
        if rig.phase() is Phase.ROLLED_BACK:
            break
    assert rig.phase() is Phase.ROLLED_BACK
    entry = rig.store.audit()[-1]
    assert entry["reason"] == "guard breach: errors-vs-v1"
    figure = entry["guards"]["errors-vs-v1"]
    assert figure["p_value"] <= 0.01 and figure["value"] > 0.5


BOUNDS = (100.0, 200.0, 300.0, 400.0, 800.0, math.inf)
counts = st.lists(st.integers(0, 500), min_size=len(BOUNDS), max_size=len(BOUNDS))


def cluster(per_bucket: list[int], errors: int) -> ClusterCounts:
    cumulative = [float(c) for c in itertools.accumulate(per_bucket)]
    buckets = tuple(zip(BOUNDS, cumulative, strict=True))
    return ClusterCounts(cumulative[-1], float(min(errors, cumulative[-1])), buckets)


@settings(max_examples=150)
@given(counts, counts, st.integers(0, 500), st.integers(0, 500), st.floats(0.0, 60.0))
def test_a_guard_short_of_samples_holds_whatever_the_counts_and_evidence(
    v2: list[int], v1: list[int], errors2: int, errors1: int, evidence: float
) -> None:
    policy = parse_policy("policy.yaml", POLICY.format(step="2h").encode())
    for guard in policy.guards[1:]:  # the latency and the error-rate comparison
        state = LookState(Running(best_log_e=evidence))  # even after strong evidence
        a, b = cluster(v2, errors2), cluster(v1, errors1)
        figure, after = judge_counts(guard, a, b, state)
        if min(a.completed, b.completed) < guard.min_samples:
            assert figure.verdict is Verdict.HOLD and after.running == state.running
        else:
            assert figure.verdict in (Verdict.PASS, Verdict.FAIL)
