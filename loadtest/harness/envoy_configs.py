"""Envoy configs of the benchmark, all derived structurally from the shipped envoy/envoy.yaml.

- :func:`without_access_log`: the shipped config minus the ingress access log (the benchmark
  measures routing, and a JSON line per request would be a fixed cost that flatters every
  ratio against native routing).
- :func:`native_routing`: the physical reference. The ext_proc filter, its per-route configs
  and the sidecar cluster are removed; the routes that send traffic to ``tts_v1`` / ``tts_v2``
  are replaced, in place, by one route with weighted clusters (90/10 by default). Everything
  else (early header mutation, /healthz, the TTS clusters, listener options) stays as shipped,
  so the reference cannot drift from the real config.
- :func:`upstream_config`: the instant upstream, a second Envoy whose two listeners (the v1 and
  v2 ports) answer every request with a direct 200 and ``x-tts-model-version: v1|v2``. A buffer
  filter reads the request body first: an Envoy that answers before the request body has
  arrived closes the HTTP/1.1 connection ("connection: close", checked here), which would
  make the proxy under test reconnect on every request.

A config without the expected listener, filter or routes raises ``EnvoyConfigError``.
"""

from __future__ import annotations

import copy
from typing import Any

from extproc.stack.envoy_config import (
    LISTENER,
    SIDECAR_CLUSTER,
    TTS_CLUSTERS,
    Config,
    EnvoyConfigError,
    EnvoyPorts,
)

EXT_PROC_FILTER = "envoy.filters.http.ext_proc"
HCM_FILTER = "envoy.filters.network.http_connection_manager"
HCM_TYPE = (
    "type.googleapis.com/"
    "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
)
ROUTER = {
    "name": "envoy.filters.http.router",
    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
}
BUFFER = {
    "name": "envoy.filters.http.buffer",
    "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer",
        "max_request_bytes": 65536,
    },
}
DEFAULT_WEIGHTS = {"v1": 90, "v2": 10}


def ingress_hcm(config: Config) -> dict[str, Any]:
    """The HttpConnectionManager of the ``tts_ingress`` listener (mutable, inside ``config``)."""
    for listener in config.get("static_resources", {}).get("listeners", []):
        if listener.get("name") != LISTENER:
            continue
        for chain in listener.get("filter_chains", []):
            for network_filter in chain.get("filters", []):
                if network_filter.get("name") == HCM_FILTER:
                    typed: dict[str, Any] = network_filter["typed_config"]
                    return typed
    raise EnvoyConfigError(f"no {HCM_FILTER} in a listener named {LISTENER!r}")


def without_access_log(config: Config) -> Config:
    """A copy of ``config`` whose ingress connection manager writes no access log."""
    out = copy.deepcopy(config)
    ingress_hcm(out).pop("access_log", None)
    return out


def without_mode_override(config: Config) -> Config:
    """A copy of ``config`` as it was before live sampling: the ext_proc filter allows no
    ``mode_override`` and forwards no metadata namespace."""
    out = copy.deepcopy(config)
    for http_filter in ingress_hcm(out)["http_filters"]:
        if http_filter["name"] == "envoy.filters.http.ext_proc":
            http_filter["typed_config"].pop("allow_mode_override", None)
            http_filter["typed_config"]["metadata_options"].pop("forwarding_namespaces", None)
    return out


def _routes_to_tts(route: dict[str, Any]) -> bool:
    return route.get("route", {}).get("cluster") in TTS_CLUSTERS.values()


def native_routing(config: Config, weights: dict[str, int] | None = None) -> Config:
    """A copy of ``config`` that routes by weighted clusters, with no ext_proc at all."""
    weights = weights or DEFAULT_WEIGHTS
    out = copy.deepcopy(config)
    hcm = ingress_hcm(out)
    filters = hcm.get("http_filters", [])
    kept = [f for f in filters if f.get("name") != EXT_PROC_FILTER]
    if len(kept) == len(filters):
        raise EnvoyConfigError(f"no {EXT_PROC_FILTER} filter in the ingress listener")
    hcm["http_filters"] = kept
    weighted = {
        "match": {"prefix": "/"},
        "route": {
            "weighted_clusters": {
                "clusters": [
                    {"name": TTS_CLUSTERS[version], "weight": weight}
                    for version, weight in weights.items()
                ]
            }
        },
    }
    for vhost in hcm.get("route_config", {}).get("virtual_hosts", []):
        routes = vhost.get("routes", [])
        for route in routes:
            route.get("typed_per_filter_config", {}).pop(EXT_PROC_FILTER, None)
            if route.get("typed_per_filter_config") == {}:
                del route["typed_per_filter_config"]
        tts = [i for i, route in enumerate(routes) if _routes_to_tts(route)]
        if tts:
            rest = [r for i, r in enumerate(routes) if i not in tts]
            vhost["routes"] = [*rest[: tts[0]], weighted, *rest[tts[0] :]]
            break
    else:
        raise EnvoyConfigError("no route to the tts clusters in the ingress route config")
    resources = out["static_resources"]
    resources["clusters"] = [c for c in resources["clusters"] if c["name"] != SIDECAR_CLUSTER]
    return out


def _direct_listener(version: str, port: int) -> dict[str, Any]:
    name = f"upstream_{version}"
    body = {"inline_string": f"{version}\n"}
    route = {"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": body}}
    vhost = {
        "name": name,
        "domains": ["*"],
        "routes": [route],
        "response_headers_to_add": [{"header": {"key": "x-tts-model-version", "value": version}}],
    }
    hcm = {
        "@type": HCM_TYPE,
        "stat_prefix": name,
        "codec_type": "AUTO",
        "route_config": {"name": name, "virtual_hosts": [vhost]},
        "http_filters": [BUFFER, ROUTER],
    }
    return {
        "name": name,
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [{"filters": [{"name": HCM_FILTER, "typed_config": hcm}]}],
    }


def upstream_config(ports: EnvoyPorts, admin_port: int) -> Config:
    """The instant-upstream Envoy: listeners on ``ports.tts_v1`` and ``ports.tts_v2``."""
    return {
        "admin": {
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}
        },
        "static_resources": {
            "listeners": [_direct_listener(v, ports.tts(v)) for v in TTS_CLUSTERS],
        },
    }
