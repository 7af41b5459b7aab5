"""The local stack's optional Prometheus (Debian binary ``prometheus``): it starts with the
stack, scrapes Envoy and the sidecar, loads the alert rules of deploy/, answers every query of
the Grafana dashboard with data after traffic, and leaves nothing behind when stopped.

Needs the ``prometheus`` binary: missing, the test fails under CI and is skipped elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from extproc.stack import client
from extproc.stack.processes import free_port, wait_until
from extproc.stack.stack import Stack
from tests.support import promql
from tests.support.tools import require_tool

pytestmark = pytest.mark.envoy
# Panels fed by processes this stack does not start (the rollout controller, the audio probes)
# or by a sidecar with an etcd state (tts_canary_state_watch_*); their names are checked
# against live scrapes elsewhere (see below; the watch's in tests/fleet/test_fleet_e2e.py).
OTHER_PROCESSES = (
    "tts_canary_guard_",
    "tts_canary_compare_",
    "tts_quality_",
    "tts_canary_state_watch_",
)


def test_stack_prometheus_scrapes_the_stack_and_answers_the_dashboard(
    make_stack: Callable[..., Stack],
) -> None:
    require_tool("prometheus", "prometheus")
    stack = make_stack(prometheus_port=free_port())
    prometheus = stack.prometheus
    assert prometheus is not None and prometheus.storage_dir is not None
    storage = prometheus.storage_dir
    # Traffic with some errors in both cohorts, so that every per-cohort series (and the v2/v1
    # 5xx ratio) exists.
    stack.set_fault("v2", error_rate=1.0)
    stack.set_fault("v1", error_rate=0.2)
    replies = [client.send(stack, {"x-user-id": f"prometheus-{n}"}) for n in range(200)]
    stack.set_fault("v2", error_rate=0.0)
    stack.set_fault("v1", error_rate=0.0)
    client.close_connections()
    assert {reply.status for reply in replies} == {200, 503}

    def decisions_scraped() -> bool:
        result = prometheus.query('sum(tts_canary_decisions_total{job="tts-canary-sidecar"})')
        return bool(result) and float(result[0]["value"][1]) == 200

    wait_until(decisions_scraped, "Prometheus to have 200 decisions", 30, prometheus.process)
    # The rollout controller's panels (tts_canary_guard_*, tts_canary_compare_*) and the audio
    # probes' (tts_quality_*) need processes this stack does not start; their names are checked
    # against a live controller's /metrics in test_observability_metrics.py and a live probe
    # process's in tests/e2e/quality/test_quality_gate.py.
    queries = {
        name: promql.without_grafana_variables(expr)
        for name, expr in promql.dashboard_queries().items()
        if not any(m.startswith(OTHER_PROCESSES) for m in promql.metric_names(expr))
    }
    empty: dict[str, str] = {}

    def every_query_answers() -> bool:
        empty.clear()
        empty.update({name: q for name, q in queries.items() if not prometheus.query(q)})
        return not empty

    try:
        wait_until(every_query_answers, "every dashboard query to return data", 30)
    except Exception as exc:
        raise AssertionError(f"dashboard queries without data: {empty}") from exc

    def rules_health() -> dict[str, str]:
        groups = prometheus.get("/api/v1/rules")["data"]["groups"]
        return {rule["name"]: rule["health"] for group in groups for rule in group["rules"]}

    assert set(rules_health()) == set(promql.alert_queries())
    wait_until(lambda: set(rules_health().values()) == {"ok"}, "every alert rule evaluated", 30)
    stack.close()
    assert prometheus.process is not None and not prometheus.process.alive()
    assert not storage.exists()
