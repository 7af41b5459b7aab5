"""The dashboard shows v2 against v1 as the comparison guards see it: both cohorts' latency
quantiles and 5xx rates as ratios in the same window, the samples per cohort, and the
controller's own figures of each compare guard (effect, interval, p-value, e-value, verdict)."""

from __future__ import annotations

from tests.support import promql


def test_comparison_panels_divide_v2_by_v1_in_the_same_window() -> None:
    queries = promql.dashboard_queries()
    latency = [e for k, e in queries.items() if "latency ratio (comparison guards)" in k]
    errors = [e for k, e in queries.items() if "5xx rate ratio (comparison guards)" in k]
    samples = [e for k, e in queries.items() if "Samples per cohort" in k]
    assert len(latency) == 2 and len(errors) == 1 and len(samples) == 1
    for expr in [*latency, *errors]:  # v2 in the numerator, v1 in the denominator
        assert expr.index('envoy_cluster_name="tts_v2"') < expr.index('envoy_cluster_name="tts_v1"')
    assert "envoy_cluster_upstream_rq_xx" in promql.metric_names(errors[0])
    assert "envoy_cluster_upstream_rq_completed" in promql.metric_names(samples[0])


def test_the_compare_guards_figures_have_panels() -> None:
    queries = promql.dashboard_queries()
    shown = {name for expr in queries.values() for name in promql.metric_names(expr)}
    assert {
        "tts_canary_compare_effect",
        "tts_canary_compare_margin",
        "tts_canary_compare_p_value",
        "tts_canary_compare_alpha",
        "tts_canary_compare_e_value",
        "tts_canary_compare_cohort_samples",
        "tts_canary_guard_verdict",
    } <= shown
