"""deploy/k8s against the code it runs: the rules and policy load, every path an argument
names is mounted, the probes ask the sidecar's real health service on its real port, the
gateway pod's ports are its Envoy config's, and the admin API is token-guarded and fenced.
(Commands and flags against ``--help``: test_dockerfile.py.)"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from extproc.addresses import EtcdTarget, parse_store_url, split_host_port
from extproc.core.loader import load_rules
from extproc.deploy import envoy_k8s
from extproc.rollout.admin.access import ADMIN_TOKEN
from extproc.rollout.policy import load_policy
from extproc.sidecar.models import EXT_PROC_SERVICE
from extproc.stack.envoy_config import LISTENER, SIDECAR_CLUSTER, TTS_CLUSTERS
from tests.support import k8s
from tests.support.tools import require_tool

PLAIN = k8s.build(k8s.K8S)
ISTIO = k8s.build(k8s.K8S / "istio")
CONFIG = k8s.K8S / "common" / "config"
Obj = dict[str, Any]


def test_fleet_rules_and_policy_load_and_name_the_same_rollout() -> None:
    rules = load_rules(CONFIG / "rules.yaml")
    policy = load_policy(CONFIG / "policy.yaml")
    assert policy.rollout == rules.name
    # A sidecar without the rollout state (not started yet; a new pod while etcd is down)
    # serves the file as written: it must err toward v1.
    assert rules.share == 0
    assert all(rule.share is None for rule in rules.rules)
    assert {g.signal for g in policy.guards} == {"promql"}, "one gateway's stats are not a fleet's"


def test_policy_guard_queries_are_valid_promql(tmp_path: Path) -> None:
    promtool = require_tool("promtool", "prometheus")
    policy = load_policy(CONFIG / "policy.yaml")
    rules = [
        {"record": f"guard:{g.name.replace('-', '_')}", "expr": g.query} for g in policy.guards
    ]
    path = tmp_path / "guards.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "guards", "rules": rules}]}))
    done = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("build", "workload", "name", "option", "expected"),
    [
        (PLAIN, "tts-gateway", "extproc", "--rules", CONFIG / "rules.yaml"),
        (PLAIN, "tts-gateway", "envoy", "--config-path", k8s.K8S / "gateway" / "envoy.yaml"),
        (PLAIN, "tts-canary-controller", "controller", "--policy", CONFIG / "policy.yaml"),
        (PLAIN, "tts-canary-controller", "controller", "--rules", CONFIG / "rules.yaml"),
        (ISTIO, "tts-canary-extproc", "extproc", "--rules", CONFIG / "rules.yaml"),
    ],
)
def test_every_file_an_argument_names_is_mounted(
    build: k8s.Build, workload: str, name: str, option: str, expected: Path
) -> None:
    args = k8s.container(build, workload, name)["args"]
    assert k8s.mounted_file(build, workload, k8s.flag(args, option)).resolve() == expected.resolve()


@pytest.mark.parametrize(
    ("build", "workload"), [(PLAIN, "tts-gateway"), (ISTIO, "tts-canary-extproc")]
)
def test_sidecar_probes_ask_its_grpc_health_on_its_listen_port(
    build: k8s.Build, workload: str
) -> None:
    sidecar = k8s.container(build, workload, "extproc")
    _, port = split_host_port(k8s.flag(sidecar["args"], "--listen"))
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert sidecar[probe]["grpc"] == {"port": port, "service": EXT_PROC_SERVICE}, probe
    assert {"name": "grpc", "containerPort": port, "protocol": "TCP"} in sidecar["ports"]


def test_gateway_sidecar_is_a_native_sidecar_started_before_envoy() -> None:
    spec = k8s.pod_spec(PLAIN.named("Deployment", "tts-gateway"))
    assert spec is not None
    assert [c["name"] for c in spec["initContainers"]] == ["extproc"]
    assert spec["initContainers"][0]["restartPolicy"] == "Always"
    assert [c["name"] for c in spec["containers"]] == ["envoy"]


def test_istio_sidecar_is_the_gateway_sidecar() -> None:
    plain = dict(k8s.container(PLAIN, "tts-gateway", "extproc"))
    assert plain.pop("restartPolicy") == "Always"
    assert k8s.container(ISTIO, "tts-canary-extproc", "extproc") == plain


def test_gateway_pod_ports_are_its_envoy_config_ports() -> None:
    config = yaml.safe_load((k8s.K8S / "gateway" / "envoy.yaml").read_text())
    listeners = {x["name"]: x["address"]["socket_address"] for x in _listeners(config)}
    envoy = k8s.container(PLAIN, "tts-gateway", "envoy")
    ports = {p["name"]: p["containerPort"] for p in envoy["ports"]}
    assert ports == {
        "http": listeners[LISTENER]["port_value"],
        "envoy-stats": listeners[envoy_k8s.STATS_LISTENER]["port_value"],
    }
    assert envoy["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    # Envoy dials the sidecar on loopback, on the port the sidecar listens on.
    sidecar = k8s.container(PLAIN, "tts-gateway", "extproc")
    _, port = split_host_port(k8s.flag(sidecar["args"], "--listen"))
    assert _endpoint(config, SIDECAR_CLUSTER) == ("127.0.0.1", port)


def test_envoy_sends_each_cohort_to_its_model_service() -> None:
    config = yaml.safe_load((k8s.K8S / "gateway" / "envoy.yaml").read_text())
    for cohort, cluster in TTS_CLUSTERS.items():
        service = PLAIN.named("Service", f"tts-{cohort}")
        assert _endpoint(config, cluster) == (f"tts-{cohort}", service["spec"]["ports"][0]["port"])


def test_every_sidecar_follows_the_state_the_controller_writes() -> None:
    urls = {
        k8s.flag(k8s.container(build, workload, name)["args"], "--state")
        for build, workload, name in [
            (PLAIN, "tts-gateway", "extproc"),
            (PLAIN, "tts-canary-controller", "controller"),
            (ISTIO, "tts-canary-extproc", "extproc"),
        ]
    }
    (url,) = urls
    target = parse_store_url(url)
    assert isinstance(target, EtcdTarget)
    assert target.prefix.endswith("/" + load_rules(CONFIG / "rules.yaml").name)


def test_controller_admin_api_is_token_guarded_and_fenced() -> None:
    controller = k8s.container(PLAIN, "tts-canary-controller", "controller")
    host, port = split_host_port(k8s.flag(controller["args"], "--admin"))
    assert host == "0.0.0.0"
    (token,) = [e for e in controller["env"] if e["name"] == ADMIN_TOKEN.env]
    assert token["valueFrom"]["secretKeyRef"] == {
        "name": "tts-canary-secrets",
        "key": "admin-token",
    }
    assert PLAIN.named("Deployment", "tts-canary-controller")["spec"]["replicas"] == 2
    service = PLAIN.named("Service", "tts-canary-controller")
    assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [(port, "admin")]
    policy = PLAIN.named("NetworkPolicy", "tts-canary-controller-admin")["spec"]
    assert policy["policyTypes"] == ["Ingress"]
    (rule,) = policy["ingress"]
    assert rule["ports"] == [{"port": port, "protocol": "TCP"}]
    gateway, operators = rule["from"]
    assert gateway == {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "tts-gateway"}}}
    label = {"tts-canary/admin-client": "true"}
    assert operators == {
        "namespaceSelector": {"matchLabels": label},
        "podSelector": {"matchLabels": label},
    }


def _listeners(config: Obj) -> list[Obj]:
    listeners: list[Obj] = config["static_resources"]["listeners"]
    return listeners


def _endpoint(config: Obj, cluster_name: str) -> tuple[str, int]:
    (cluster,) = [c for c in config["static_resources"]["clusters"] if c["name"] == cluster_name]
    (locality,) = cluster["load_assignment"]["endpoints"]
    (endpoint,) = locality["lb_endpoints"]
    address = endpoint["endpoint"]["address"]["socket_address"]
    return address["address"], address["port_value"]
