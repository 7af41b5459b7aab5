"""examples/policy-resources.yaml: valid for `extproc check`, every guard a PromQL query on
the standard exporters' metric names, scoped to one deployment, and the stand-in exporter of
the Prometheus tests serves exactly those families."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from extproc.cli import main
from extproc.rollout.policy import load_policy
from tests.support.promql import exposed_names, metric_names
from tests.support.resource_exporter import ResourceExporter

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples/policy-resources.yaml"
STANDARD = {
    "DCGM_FI_DEV_FB_USED",  # NVIDIA DCGM exporter
    "DCGM_FI_DEV_FB_FREE",
    "DCGM_FI_DEV_GPU_UTIL",
    "container_memory_working_set_bytes",  # cAdvisor (kubelet)
    "container_cpu_usage_seconds_total",
}
SELECTOR = re.compile(r"\b([A-Za-z_:][A-Za-z0-9_:]*)\{([^{}]*)\}")


def test_extproc_check_accepts_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(EXAMPLE)]) == 0
    assert capsys.readouterr().out.strip() == (
        f"{EXAMPLE}: ok: policy for gpt-sovits-v2, initial 10%, 5 guards"
    )


def test_guards_read_only_the_standard_metric_names() -> None:
    policy = load_policy(EXAMPLE)
    assert {g.signal for g in policy.guards} == {"promql"}
    assert set().union(*(metric_names(g.query) for g in policy.guards)) == STANDARD


def test_every_selector_names_a_namespace_and_a_deployments_pods() -> None:
    for guard in load_policy(EXAMPLE).guards:
        selectors = SELECTOR.findall(guard.query)
        assert selectors, guard.name
        for name, matchers in selectors:
            assert 'namespace="tts"' in matchers and re.search(r'pod=~"tts-v[12]-\.\+"', matchers)
            if name.startswith("container_"):  # not the pause container, not the pod total
                assert 'container="tts"' in matchers, guard.name


def test_the_stand_in_exporter_serves_those_families() -> None:
    with ResourceExporter() as exporter:
        assert exposed_names(exporter.exposition()) == STANDARD
