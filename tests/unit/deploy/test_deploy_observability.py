"""deploy/: the Prometheus config and alerts pass promtool (check + unit tests), and the Grafana
dashboard is well formed, its queries are valid PromQL and name only metrics the stack exports
(the checked-in list, itself verified against a live scrape by
tests/e2e/observability/test_observability.py).

promtool comes from the Debian package ``prometheus``: missing, these tests fail under CI and
are skipped elsewhere.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support import promql
from tests.support.tools import require_tool

DEPLOY = promql.REPO_ROOT / "deploy"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
ALERT_TESTS = DEPLOY / "prometheus" / "alerts.test.yaml"
# Series Prometheus makes itself for every target.
PROMETHEUS_OWN = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped"})
SEED_GATES = {
    "TtsV2LatencyP95High",
    "TtsV2ErrorRateHigh",
    "TtsCanaryShareDrift",
    "TtsCanaryEnvoyFailingOpen",
    "TtsCanaryRulesReloadFailing",
}


def exported_names() -> set[str]:
    return promql.listed_names()


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = require_tool("promtool", "prometheus")
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=60, check=False)


def test_promtool_check_rules() -> None:
    result = promtool("check", "rules", str(promql.ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_check_config() -> None:
    result = promtool("check", "config", str(PROMETHEUS_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_of_the_alerts() -> None:
    result = promtool("test", "rules", str(ALERT_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_unit_tests_cover_firing_and_quiet_cases_of_every_gate() -> None:
    tests = yaml.safe_load(ALERT_TESTS.read_text(encoding="utf-8"))["tests"]
    cases = [case for test in tests for case in test["alert_rule_test"]]
    fires = {c["alertname"] for c in cases if c["exp_alerts"]}
    quiet = {c["alertname"] for c in cases if not c["exp_alerts"]}
    assert fires >= SEED_GATES and quiet >= SEED_GATES


def test_every_gate_has_an_alert_with_severity_and_text() -> None:
    groups = yaml.safe_load(promql.ALERTS.read_text(encoding="utf-8"))["groups"]
    alerts = {rule["alert"]: rule for group in groups for rule in group["rules"]}
    assert set(alerts) >= SEED_GATES
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in ("page", "ticket"), name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name


def test_prometheus_scrapes_envoy_admin_and_the_sidecar() -> None:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["envoy"]["metrics_path"] == "/stats/prometheus"
    assert jobs["envoy"]["static_configs"] == [{"targets": ["127.0.0.1:9901"]}]
    assert jobs["tts-canary-sidecar"]["static_configs"] == [{"targets": ["127.0.0.1:9464"]}]
    assert config["rule_files"] == ["alerts.yaml"]


def test_dashboard_panels_are_well_formed() -> None:
    dashboard = promql.load_dashboard()
    panels = promql.panels(dashboard)
    assert len({panel["id"] for panel in panels}) == len(panels)
    (variable,) = dashboard["templating"]["list"]
    assert (variable["name"], variable["type"], variable["query"]) == (
        "datasource",
        "datasource",
        "prometheus",
    )
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        assert set(panel["gridPos"]) == {"x", "y", "w", "h"}
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(set(ref_ids)) == len(ref_ids), panel["title"]


@pytest.mark.parametrize(
    ("title_part", "metric"),
    [
        ("configured vs observed", "tts_canary_default_share_ratio"),
        ("configured vs observed", "envoy_cluster_upstream_rq_completed"),
        ("p95 latency per cohort", "envoy_cluster_upstream_rq_time_bucket"),
        ("Error rate per cohort", "envoy_cluster_upstream_rq_xx"),
        ("Decisions/s by cohort and reason", "tts_canary_decisions_total"),
        ("fail-open", "envoy_http_ext_proc_failure_mode_allowed"),
        ("Reload failures", "tts_canary_rules_reloads_total"),
        ("Live sampling: DNSMOS per cohort", "tts_quality_live_mos_sum"),
        ("Live sampling: silence, clipping and invalid", "tts_quality_live_silence_ratio_sum"),
        ("Live sampling: silence, clipping and invalid", "tts_quality_live_scored_total"),
        ("Live sampling: sampled, scored, dropped", "tts_quality_live_dropped_total"),
    ],
)
def test_dashboard_has_the_issue_panels(title_part: str, metric: str) -> None:
    queries = promql.dashboard_queries()
    assert any(
        title_part.lower() in key.lower() and metric in promql.metric_names(expr)
        for key, expr in queries.items()
    ), f"no panel titled like {title_part!r} queries {metric}"


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """Each query, Grafana variables replaced, as a recording rule that promtool parses."""
    rules = [
        {"record": f"dashboard:query_{i}", "expr": promql.without_grafana_variables(expr)}
        for i, expr in enumerate(promql.dashboard_queries().values())
    ]
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_deploy_queries_name_only_exported_metrics() -> None:
    unknown = promql.deploy_metric_names() - exported_names() - PROMETHEUS_OWN
    assert not unknown, f"dashboard/alerts name metrics the stack does not export: {unknown}"


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('rate(a_total{x="y", z=~"b|c"}[5m])', {"a_total"}),
        ("sum by (le, job) (rate(h_bucket[$__rate_interval]))", {"h_bucket"}),
        ("histogram_quantile(0.95, sum(rate(h_bucket[1m])) by (le)) > 800", {"h_bucket"}),
        ("a / on (job) group_left (version) b unless c == bool 1", {"a", "b", "c"}),
        ('up{job="x"} == 0 and absent(d offset 5m)', {"up", "d"}),
        ("count by (v) (info == 1) or vector(0)", {"info"}),
    ],
)
def test_metric_name_extraction(expr: str, names: set[str]) -> None:
    assert promql.metric_names(promql.without_grafana_variables(expr)) == names
