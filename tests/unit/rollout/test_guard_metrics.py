"""The controller's guard metrics: exact exposition of a fixed evaluation (golden text), and
the /metrics endpoint of ``extproc rollout controller --metrics`` serving a real check."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from extproc.rollout.controller_command import serving_guard_metrics
from extproc.rollout.guards.exposition import guard_registry
from extproc.rollout.guards.judge import Evaluation, Figure
from extproc.rollout.notify.metrics import NotifyMetrics
from extproc.rollout.state import Verdict
from tests.support.comparison_rig import Rig

COMPARE = Figure(
    guard="v2-vs-v1",
    signal="compare",
    cohort="v2-v1",
    value=0.2,
    samples=300,
    threshold=0.1,
    window=42.0,
    min_samples=100,
    verdict=Verdict.FAIL,
    metric="latency",
    alpha=0.01,
    low=0.125,
    high=None,
    p_value=0.005,
    e_value=250.0,
    samples_v2=300,
    samples_v1=2700,
)
P95 = Figure("v2-p95", "latency_p95", "v2", 0.5, 300, 0.8, 60.0, 100, Verdict.PASS)
GOLDEN = Path(__file__).parents[2] / "fixtures" / "guard_metrics.prom"


def test_the_exposition_of_a_fixed_evaluation_is_exact() -> None:
    evaluation = Evaluation(1.0, Verdict.FAIL, (P95, COMPARE))
    exposition = generate_latest(guard_registry(lambda: evaluation)).decode()
    assert exposition == GOLDEN.read_text(encoding="utf-8")


def test_before_the_first_check_there_are_no_samples() -> None:
    text = generate_latest(guard_registry(lambda: None)).decode()
    assert "# TYPE tts_canary_guard_verdict gauge" in text and "guard=" not in text


def test_the_controller_serves_its_guard_figures(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.controller.apply("start", "alice")
    rig.traffic(30)
    with serving_guard_metrics("127.0.0.1:0", rig.controller) as port:
        url = f"http://127.0.0.1:{port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
    assert 'tts_canary_guard_verdict{guard="v2-vs-v1",verdict="pass"} 1.0' in text
    assert 'tts_canary_compare_cohort_samples{cohort="v2",guard="v2-vs-v1"}' in text
    assert 'tts_canary_compare_p_value{guard="errors-vs-v1",metric="error_rate"} 1.0' in text


def test_one_endpoint_serves_the_guard_figures_and_the_notifications(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.controller.apply("start", "alice")
    rig.traffic(30)
    notify = NotifyMetrics()
    notify.add_sink("team-webhook")
    with serving_guard_metrics("127.0.0.1:0", rig.controller, notify.registry) as port:
        url = f"http://127.0.0.1:{port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
    assert 'tts_canary_guard_verdict{guard="v2-vs-v1",verdict="pass"} 1.0' in text
    assert 'tts_canary_notifications_total{outcome="delivered",sink="team-webhook"} 0.0' in text


def test_the_metrics_endpoint_refuses_a_bad_address(tmp_path: Path) -> None:
    with (
        pytest.raises(ValueError, match="is not host:port"),
        serving_guard_metrics("nowhere", Rig(tmp_path).controller),
    ):
        pass
