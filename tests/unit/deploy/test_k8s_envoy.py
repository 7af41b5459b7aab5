"""Every Envoy config the project ships passes ``envoy --mode validate``, and the Kubernetes
variants cannot drift from envoy/envoy.yaml: the gateway pod's file is a fresh rendering of
it that differs only in addresses (plus the stats listener and the trace sampling), and the
Istio EnvoyFilter, applied to the shipped config stripped of what it adds, gives it back.
(The benchmark's configs are built in code and validated by tests/loadtest/test_smoke.py.)"""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from extproc.deploy import envoy_k8s
from extproc.stack import envoy_config
from extproc.stack.stack import find_envoy
from tests.support import k8s

K8S_ENVOY = k8s.K8S / "gateway" / "envoy.yaml"
EXT_PROC = "envoy.filters.http.ext_proc"
Config = dict[str, Any]


def envoy_validate(path: Path) -> None:
    done = subprocess.run(
        [find_envoy(), "--mode", "validate", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_envoy_binary_is_the_one_next_to_this_python() -> None:
    assert Path(find_envoy()).parent == Path(sys.executable).parent


@pytest.mark.parametrize("path", [envoy_config.DEFAULT_CONFIG_PATH, K8S_ENVOY], ids=str)
def test_shipped_envoy_configs_pass_envoy_validate(path: Path) -> None:
    """The Kubernetes file as shipped: validate mode builds clusters without resolving DNS,
    so the Service names (which do not resolve here) need no rewriting to loopback."""
    envoy_validate(path)


def test_kubernetes_envoy_config_is_a_fresh_rendering() -> None:
    text = K8S_ENVOY.read_text(encoding="utf-8")
    assert text == envoy_k8s.to_yaml(envoy_k8s.render()), "stale: run scripts/render-deploy"


def _addresses_blanked(config: Config) -> Config:
    """A copy with every socket address, cluster type and the trace sampling blanked."""

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            out = {k: walk(v) for k, v in node.items()}
            if "socket_address" in out:
                out["socket_address"] = "*"
            return out
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    blanked: Config = walk(copy.deepcopy(config))
    for cluster in blanked["static_resources"]["clusters"]:
        cluster["type"] = "*"  # STATIC for an IP, STRICT_DNS for a Service name
    envoy_config.connection_manager(blanked)["tracing"]["random_sampling"] = "*"
    return blanked


def test_kubernetes_variant_differs_from_the_shipped_config_only_in_addresses() -> None:
    shipped = envoy_config.load_config()
    variant = yaml.safe_load(K8S_ENVOY.read_text(encoding="utf-8"))
    resources = variant["static_resources"]
    stats = resources["listeners"].pop()
    admin = resources["clusters"].pop()
    assert (stats["name"], admin["name"]) == (envoy_k8s.STATS_LISTENER, envoy_k8s.ADMIN_CLUSTER)
    assert _addresses_blanked(variant) == _addresses_blanked(shipped)
    # The added listener proxies only GET /stats/prometheus, to the loopback-only admin.
    hcm = stats["filter_chains"][0]["filters"][0]["typed_config"]
    (route,) = hcm["route_config"]["virtual_hosts"][0]["routes"]
    assert route["match"]["path"] == "/stats/prometheus"
    assert route["route"] == {"cluster": envoy_k8s.ADMIN_CLUSTER}
    admin_address = variant["admin"]["address"]["socket_address"]
    assert admin_address["address"] == "127.0.0.1"
    endpoint = admin["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert endpoint["address"]["socket_address"] == admin_address


def _envoy_filter() -> Config:
    (found,) = k8s.build(k8s.K8S / "istio").of_kind("EnvoyFilter")
    return found


def _merge(into: Config, patch: Config) -> None:
    """Istio's MERGE of a protobuf: mappings merge, lists append, scalars replace."""
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        elif isinstance(value, list):
            into[key] = [*into.get(key, []), *value]
        else:
            into[key] = value


def apply_envoy_filter(config: Config, envoy_filter: Config) -> Config:
    """``config`` with the EnvoyFilter's patches applied to the ingress connection manager
    (the two operations it uses; anything else fails the test)."""
    out = copy.deepcopy(config)
    listener = out["static_resources"]["listeners"][0]
    hcm_filter = listener["filter_chains"][0]["filters"][0]
    for patch in envoy_filter["spec"]["configPatches"]:
        assert patch["match"]["context"] == "GATEWAY"
        target = patch["match"]["listener"]["filterChain"]["filter"]
        assert target["name"] == hcm_filter["name"]
        operation, value = patch["patch"]["operation"], patch["patch"]["value"]
        if (patch["applyTo"], operation) == ("NETWORK_FILTER", "MERGE"):
            assert value["typed_config"]["@type"] == hcm_filter["typed_config"]["@type"]
            _merge(hcm_filter, value)
        elif (patch["applyTo"], operation) == ("HTTP_FILTER", "INSERT_BEFORE"):
            filters = hcm_filter["typed_config"]["http_filters"]
            names = [f["name"] for f in filters]
            filters.insert(names.index(target["subFilter"]["name"]), value)
        else:
            pytest.fail(f"unexpected patch {patch['applyTo']} {operation}")
    return out


def test_istio_envoy_filter_adds_exactly_what_the_shipped_config_has(tmp_path: Path) -> None:
    """Strip the early mutation and the ext_proc filter from the shipped config, apply the
    EnvoyFilter, rename the sidecar cluster to Istio's name for the extproc Service: the
    result is the shipped config (so the same processing mode, fail-open, timeout, metadata
    namespaces and filter order), and Envoy accepts it."""
    envoy_filter = _envoy_filter()
    (ext_proc,) = [
        p["patch"]["value"]
        for p in envoy_filter["spec"]["configPatches"]
        if p["applyTo"] == "HTTP_FILTER"
    ]
    istio_cluster = ext_proc["typed_config"]["grpc_service"]["envoy_grpc"]["cluster_name"]
    assert istio_cluster == "outbound|50051||tts-canary-extproc.tts-canary.svc.cluster.local"
    shipped = envoy_config.load_config()
    expected = copy.deepcopy(shipped)
    hcm = envoy_config.connection_manager(expected)
    (shipped_ext_proc,) = [f for f in hcm["http_filters"] if f["name"] == EXT_PROC]
    shipped_ext_proc["typed_config"]["grpc_service"]["envoy_grpc"]["cluster_name"] = istio_cluster
    for cluster in expected["static_resources"]["clusters"]:
        if cluster["name"] == envoy_config.SIDECAR_CLUSTER:
            cluster["name"] = cluster["load_assignment"]["cluster_name"] = istio_cluster
    stripped = copy.deepcopy(expected)
    bare = envoy_config.connection_manager(stripped)
    del bare["early_header_mutation_extensions"]
    bare["http_filters"] = [f for f in bare["http_filters"] if f["name"] != EXT_PROC]

    patched = apply_envoy_filter(stripped, envoy_filter)
    assert patched == expected
    path = tmp_path / "istio-patched.yaml"
    path.write_text(yaml.safe_dump(patched, sort_keys=False))
    envoy_validate(path)
