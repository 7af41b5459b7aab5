"""Metrics through the real stack: the sidecar's /metrics (parsed with prometheus_client's
parser) and Envoy's stats move exactly as the traffic says, and every metric name the
dashboard and alerts rely on (tests/fixtures/exported_metric_names.txt) is really exported.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from extproc.core.loader import load_rules
from extproc.rollout.clock import SystemClock
from extproc.rollout.controller import Controller
from extproc.rollout.controller_command import serving_guard_metrics
from extproc.rollout.guards.signals import EnvoyStatsSource
from extproc.rollout.policy import parse_policy
from extproc.rollout.stores.state_store import FileStateStore
from extproc.stack import client
from extproc.stack.processes import wait_until
from extproc.stack.stack import DEFAULT_RULES, Stack
from tests.support import promql, scrape

pytestmark = pytest.mark.envoy

FAIL_OPEN = r"^http\.tts_ingress\.ext_proc\.failure_mode_allowed$"
QUALITY = "tts_quality_"  # the probe process's: checked live by tests/e2e/quality
#: Exported only by a sidecar that follows the state in etcd: checked live by tests/fleet.
WATCH = "tts_canary_state_watch_"


@pytest.fixture(scope="module")
def metered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A private stack (its counters move only with this module's traffic)."""
    rules = tmp_path_factory.mktemp("rules") / "rules.yaml"
    shutil.copyfile(DEFAULT_RULES, rules)
    run_dir = tmp_path_factory.mktemp("metered-stack")
    with Stack.with_free_ports(run_dir=run_dir, rules=rules) as stack:
        yield stack


@pytest.fixture
def stack(metered: Stack) -> Iterator[Stack]:
    """The module's stack with the sidecar up and seen healthy, before and after the test."""
    if not metered.sidecar.alive():
        metered.start_sidecar()
    yield metered
    client.close_connections()
    if not metered.sidecar.alive():
        metered.start_sidecar()


def sidecar_metrics(stack: Stack) -> str:
    return scrape.fetch(stack.metrics_url)


def envoy_counter(stack: Stack, name: str) -> int:
    """One Envoy counter by its exact stat name (0 while never used)."""
    return sum(stack.envoy_stats(f"^{name.replace('.', '[.]')}$").values())


def write_rules(path: Path, text: str) -> None:
    """Replace the rules file in one step, as a ConfigMap update does."""
    staged = path.with_suffix(".staged")
    staged.write_text(text, encoding="utf-8")
    os.replace(staged, path)


def test_decision_counters_rise_by_exactly_the_responses_seen(stack: Stack) -> None:
    before = sidecar_metrics(stack)
    v2_before = envoy_counter(stack, "cluster.tts_v2.upstream_rq_completed")
    users = [f"metered-user-{n}" for n in range(300)]
    replies = [client.send(stack, {"x-user-id": user}) for user in users]
    assert {reply.status for reply in replies} == {200}
    seen = Counter(reply.version for reply in replies)
    assert seen["v1"] + seen["v2"] == 300 and seen["v2"] > 0
    after = sidecar_metrics(stack)

    def rose(sample: str, **labels: str) -> float:
        return scrape.total(after, sample, **labels) - scrape.total(before, sample, **labels)

    for cohort in ("v1", "v2"):
        assert rose("tts_canary_decisions_total", cohort=cohort) == seen[cohort]
    assert rose("tts_canary_decision_duration_seconds_count") == 300
    assert envoy_counter(stack, "cluster.tts_v2.upstream_rq_completed") - v2_before == seen["v2"]
    assert scrape.total(after, "tts_canary_stream_errors_total") == 0
    kinds = {
        labels["kind"] for labels in scrape.label_sets(after, "tts_canary_stream_errors_total")
    }
    assert kinds >= {"bad_message", "internal"}  # pre-declared, so a rate() starts at 0
    for labels in scrape.label_sets(after, "tts_canary_decisions_total"):
        assert set(labels) == {"cohort", "reason", "rule"}
        assert not any("metered-user" in value for value in labels.values())


def test_reload_counters_and_serving_share_follow_rules_edits(stack: Stack) -> None:
    original = stack.rules.read_text(encoding="utf-8")

    def reloads(outcome: str) -> float:
        return scrape.total(
            sidecar_metrics(stack), "tts_canary_rules_reloads_total", outcome=outcome
        )

    loaded, failed = reloads("loaded"), reloads("failed")
    try:
        write_rules(stack.rules, original.replace("share: 10%", "share: 20%", 1))
        wait_until(lambda: reloads("loaded") == loaded + 1, "a loaded reload", 10, stack.sidecar)
        text = sidecar_metrics(stack)
        assert scrape.total(text, "tts_canary_default_share_ratio") == pytest.approx(0.2)
        (info,) = scrape.label_sets(text, "tts_canary_rules_info")
        assert info["version"] == load_rules(stack.rules).version
        write_rules(stack.rules, original + "\nnot: [valid\n")
        wait_until(lambda: reloads("failed") == failed + 1, "a failed reload", 10, stack.sidecar)
        text = sidecar_metrics(stack)
        assert scrape.total(text, "tts_canary_default_share_ratio") == pytest.approx(0.2)
        assert scrape.label_sets(text, "tts_canary_rules_info") == [info]  # last good rules
    finally:
        write_rules(stack.rules, original)
        wait_until(lambda: reloads("loaded") == loaded + 2, "the restore", 10, stack.sidecar)


def test_envoy_counts_each_request_it_lets_through_undecided(stack: Stack) -> None:
    before = envoy_counter(stack, "http.tts_ingress.ext_proc.failure_mode_allowed")
    stack.kill_sidecar()
    stack.wait_sidecar_health_in_envoy(healthy=False)
    replies = [client.send(stack, {"x-user-id": f"fail-open-{n}"}) for n in range(5)]
    assert {(reply.status, reply.version) for reply in replies} == {(200, "v1")}
    after = envoy_counter(stack, "http.tts_ingress.ext_proc.failure_mode_allowed")
    assert after - before == 5
    stack.start_sidecar()


def controller_metrics(stack: Stack, tmp_path: Path) -> str:
    """The guard metrics of a controller (in-process, one check on the stack's Envoy, with a
    threshold and a compare guard), scraped from its --metrics endpoint."""
    policy = parse_policy(
        "policy.yaml",
        b"policy: {rollout: gpt-sovits-v2, initial_share: 10%, guards: [\n"
        b"  {name: v2-p95, signal: latency_p95, threshold: 800ms, window: 5s},\n"
        b"  {name: v2-vs-v1, compare: {metric: latency, margin: 10%}, min_samples: 1}]}\n",
    )
    clock = SystemClock()
    source = EnvoyStatsSource(stack.admin_url, clock, 5.0)
    store = FileStateStore(tmp_path / "controller-state.json")
    controller = Controller(policy, store, {"envoy": source}, clock=clock)
    asyncio.run(controller.check())  # the compare guard's stage starts here

    def compared() -> bool:  # both cohorts served since (forced users), then looked at
        for user in ("qa-001", "vip-42"):
            client.send(stack, {"x-user-id": user})
        asyncio.run(controller.check())
        figure = controller.status(0)["guards"]["v2-vs-v1"]
        return figure.get("value") is not None and figure.get("effect_low") is not None

    # Latencies inside Envoy's buckets (not all in the first, where no shift can be seen), so
    # that the comparison has an effect and an interval to export.
    for version in ("v1", "v2"):
        stack.set_fault(version, latency_ms=30)
    try:
        wait_until(compared, "the compare guard to see both cohorts", 30)
    finally:
        for version in ("v1", "v2"):
            stack.set_fault(version, latency_ms=0)
    with serving_guard_metrics("127.0.0.1:0", controller) as port:
        return scrape.fetch(f"http://127.0.0.1:{port}/metrics")


def test_every_listed_and_deployed_metric_name_is_exported(stack: Stack, tmp_path: Path) -> None:
    """After traffic: the checked-in list, and every name the deploy files query, are in a live
    scrape of the sidecar and Envoy (names as Prometheus stores them)."""
    for n in range(20):
        client.send(stack, {"x-user-id": f"names-{n}"})
    live = promql.exposed_names(sidecar_metrics(stack))
    live |= promql.exposed_names(scrape.fetch(stack.admin_url + "/stats/prometheus"))
    live |= promql.exposed_names(controller_metrics(stack, tmp_path))
    listed = {name for name in promql.listed_names() if not name.startswith((QUALITY, WATCH))}
    assert not listed - live, f"listed but not exported: {sorted(listed - live)}"
    deployed = {
        name for name in promql.deploy_metric_names() if not name.startswith((QUALITY, WATCH))
    }
    missing = deployed - live - {"up"}
    assert not missing, f"dashboard/alerts query names the stack does not export: {missing}"
