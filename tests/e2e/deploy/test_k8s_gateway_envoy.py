"""The gateway pod's Envoy config (deploy/k8s/gateway/envoy.yaml) run by a real Envoy beside
the shared stack's sidecar and stand-in models: it decides, strips a spoofed cohort, answers
the kubelet's /healthz, and its stats listener serves /stats/prometheus and nothing else.

Addresses are rewritten to loopback (the tests use loopback only; the Service names do not
resolve here) and tracing is removed (no collector here); everything else is the file."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from extproc.deploy import envoy_k8s
from extproc.stack import client, envoy_config
from extproc.stack.envoy_config import LISTENER, TTS_CLUSTERS, EnvoyPorts
from extproc.stack.processes import ManagedProcess, free_port, wait_for_http, wait_until
from extproc.stack.stack import Stack, find_envoy
from tests.support import k8s

pytestmark = pytest.mark.envoy
HOST = "127.0.0.1"


def loopback_config(stack: Stack, stats_port: int) -> dict[str, Any]:
    config = yaml.safe_load((k8s.K8S / "gateway" / "envoy.yaml").read_text(encoding="utf-8"))
    ports = EnvoyPorts(free_port(), free_port(), stack.ports.sidecar, 0, 0)
    envoy_config.set_ports(config, ports)
    for cohort, cluster in TTS_CLUSTERS.items():
        envoy_config.point_cluster(config, cluster, HOST, stack.ports.tts(cohort))
    envoy_config.point_cluster(config, envoy_k8s.ADMIN_CLUSTER, HOST, ports.admin)
    envoy_config.remove_tracing(config)
    for listener in config["static_resources"]["listeners"]:
        address = listener["address"]["socket_address"]
        address["address"] = HOST
        if listener["name"] == envoy_k8s.STATS_LISTENER:
            address["port_value"] = stats_port
    return config


class K8sEnvoy:
    def __init__(self, config: dict[str, Any], stats_port: int) -> None:
        listeners = config["static_resources"]["listeners"]
        (ingress,) = [x for x in listeners if x["name"] == LISTENER]
        self.listener_address = (HOST, ingress["address"]["socket_address"]["port_value"])
        self.stats_url = f"http://{HOST}:{stats_port}"


@pytest.fixture
def k8s_envoy(stack: Stack, tmp_path: Path) -> Iterator[K8sEnvoy]:
    stats_port = free_port()
    config = loopback_config(stack, stats_port)
    path = tmp_path / "envoy-k8s.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    argv = [find_envoy(), "-c", str(path), "--disable-hot-restart", "--concurrency", "1"]
    argv += ["--log-level", "warn"]
    envoy = K8sEnvoy(config, stats_port)
    with ManagedProcess("envoy-k8s", argv, tmp_path / "envoy.log") as process:
        wait_for_http(f"http://{HOST}:{envoy.listener_address[1]}/healthz", 30, process)
        # Decided by the sidecar once Envoy's health check has admitted it: qa-001 is a
        # tester, forced to v2 by the rules.
        wait_until(lambda: _version(envoy, "qa-001") == "v2", "a decided request", 30, process)
        yield envoy
    client.close_connections()


def _version(envoy: K8sEnvoy, user: str, **headers: str) -> str | None:
    return client.send(envoy, {"x-user-id": user, **headers}).version


def _get(url: str, method: str = "GET") -> tuple[int, str]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""


def test_decides_and_strips_a_spoofed_cohort(k8s_envoy: K8sEnvoy) -> None:
    assert _version(k8s_envoy, "vip-42", **{"x-tts-cohort": "v2"}) == "v1"  # protected user
    assert _version(k8s_envoy, "qa-002", **{"X-TTS-Cohort": "v1"}) == "v2"  # tester


def test_healthz_is_answered_by_envoy_itself(k8s_envoy: K8sEnvoy) -> None:
    status, body = _get(f"http://{HOST}:{k8s_envoy.listener_address[1]}/healthz")
    assert (status, body) == (200, "ok\n")


def test_stats_listener_serves_prometheus_stats_only(k8s_envoy: K8sEnvoy) -> None:
    _version(k8s_envoy, "qa-001")
    status, body = _get(k8s_envoy.stats_url + "/stats/prometheus")
    assert status == 200
    assert 'envoy_cluster_upstream_rq_completed{envoy_cluster_name="tts_v2"}' in body
    for path, method in [
        ("/stats", "GET"),
        ("/quitquitquit", "POST"),
        ("/stats/prometheus", "POST"),
    ]:
        assert _get(k8s_envoy.stats_url + path, method)[0] == 404, (path, method)
    assert _version(k8s_envoy, "qa-001") == "v2"  # still up: /quitquitquit never reached admin
