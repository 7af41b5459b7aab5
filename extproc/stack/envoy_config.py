"""Load the shipped Envoy config (envoy/envoy.yaml) and re-port it for other runs.

There is one Envoy config; the stack and the tests run it as shipped except for its ports,
which are rewritten structurally: the admin address, the listener named ``tts_ingress`` and
the endpoints of the clusters ``extproc_sidecar``, ``tts_v1`` and ``tts_v2`` (and of the audio
probes' ``tts_v1_probe`` / ``tts_v2_probe`` with them). The probe listener ``tts_probe`` gets
``EnvoyPorts.probe``; with None (the default) it and its clusters are removed. A config that
lacks one of these names raises :class:`EnvoyConfigError` rather than silently keeping a port.

Host names: :func:`point_cluster` sends a cluster to another host (an IP stays STATIC, a
name such as a Kubernetes Service becomes STRICT_DNS); ``extproc.deploy.envoy_k8s`` renders
the gateway pod's config that way.

Tracing: the shipped config traces every request to the OTLP/gRPC cluster ``otel_collector``.
:func:`render_config` keeps that only when given an :class:`OtlpTarget` (pointing the cluster
at it, with its sampling); without one it removes the connection manager's ``tracing`` block
and the ``otel_collector`` cluster, so Envoy neither creates nor exports spans.
"""

from __future__ import annotations

import copy
import ipaddress
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from extproc.stack.otlp import OtlpTarget

DEFAULT_CONFIG_PATH = Path(__file__).resolve().parents[2] / "envoy" / "envoy.yaml"
LISTENER = "tts_ingress"
SIDECAR_CLUSTER = "extproc_sidecar"
TTS_CLUSTERS = {"v1": "tts_v1", "v2": "tts_v2"}
PROBE_LISTENER = "tts_probe"
PROBE_CLUSTERS = {"v1": "tts_v1_probe", "v2": "tts_v2_probe"}
OTEL_CLUSTER = "otel_collector"
#: Runtime keys of Envoy's OpenTelemetry tracer (envoy.yaml sets its export batching).
TRACER_RUNTIME_PREFIX = "tracing.opentelemetry."
HCM_FILTER = "envoy.filters.network.http_connection_manager"

Config = dict[str, Any]


class EnvoyConfigError(ValueError):
    """The config does not have the shape this module rewrites."""


@dataclass(frozen=True)
class EnvoyPorts:
    """Every loopback port the Envoy config refers to."""

    listener: int
    admin: int
    sidecar: int
    tts_v1: int
    tts_v2: int
    probe: int | None = None  # the audio probe listener; None: removed from the config

    def tts(self, version: str) -> int:
        """Port of the stand-in for ``version`` ("v1" or "v2")."""
        return {"v1": self.tts_v1, "v2": self.tts_v2}[version]


def load_config(path: Path | None = None) -> Config:
    """Parse the Envoy config at ``path`` (default: the shipped envoy/envoy.yaml)."""
    source = path or DEFAULT_CONFIG_PATH
    loaded = yaml.safe_load(source.read_text(encoding="utf-8"))
    if not isinstance(loaded, dict):
        raise EnvoyConfigError(f"{source}: expected a mapping at the top level")
    return loaded


def _named(items: list[Config], name: str, kind: str) -> Config:
    for item in items:
        if item.get("name") == name:
            return item
    raise EnvoyConfigError(f"no {kind} named {name!r} in the Envoy config")


def _socket_addresses(cluster: Config) -> list[Config]:
    addresses = [
        lb_endpoint["endpoint"]["address"]["socket_address"]
        for locality in cluster.get("load_assignment", {}).get("endpoints", [])
        for lb_endpoint in locality.get("lb_endpoints", [])
    ]
    if not addresses:
        raise EnvoyConfigError(f"cluster {cluster.get('name')!r} has no endpoint address")
    return addresses


def _port_slots(config: Config) -> dict[str, list[Config]]:
    """For each EnvoyPorts field, the socket_address mappings that carry that port (the probe
    listener and its clusters only if the config has them)."""
    resources = config.get("static_resources", {})
    clusters = resources.get("clusters", [])
    listeners = resources.get("listeners", [])
    listener = _named(listeners, LISTENER, "listener")
    slots = {
        "listener": [listener["address"]["socket_address"]],
        "admin": [config["admin"]["address"]["socket_address"]],
        "sidecar": _socket_addresses(_named(clusters, SIDECAR_CLUSTER, "cluster")),
    }
    names = {c.get("name") for c in clusters}
    for cohort in ("v1", "v2"):
        slots[f"tts_{cohort}"] = _socket_addresses(
            _named(clusters, TTS_CLUSTERS[cohort], "cluster")
        )
        if PROBE_CLUSTERS[cohort] in names:
            probe_cluster = _named(clusters, PROBE_CLUSTERS[cohort], "cluster")
            slots[f"tts_{cohort}"] += _socket_addresses(probe_cluster)
    if any(item.get("name") == PROBE_LISTENER for item in listeners):
        slots["probe"] = [
            _named(listeners, PROBE_LISTENER, "listener")["address"]["socket_address"]
        ]
    return slots


def ports_of(config: Config) -> EnvoyPorts:
    """The ports a config uses (for the shipped one: the documented defaults)."""
    slots = _port_slots(config)
    return EnvoyPorts(**{field: int(slots[field][0]["port_value"]) for field in slots})


def default_ports() -> EnvoyPorts:
    """The documented default ports, read from the shipped config itself."""
    return ports_of(load_config())


def render_config(
    ports: EnvoyPorts, path: Path | None = None, tracing: OtlpTarget | None = None
) -> Config:
    """A copy of the config at ``path`` with every port replaced by those in ``ports``, and
    tracing pointed at ``tracing`` (or removed, when None: the default)."""
    config = copy.deepcopy(load_config(path))
    set_ports(config, ports)
    if tracing is None:
        remove_tracing(config)
    else:
        point_tracing(config, tracing)
    return config


def set_ports(config: Config, ports: EnvoyPorts) -> None:
    """Replace every port the config refers to with those in ``ports`` (in place); without a
    probe port, the probe listener and its clusters are removed."""
    if ports.probe is None:
        remove_probes(config)
    for field, addresses in _port_slots(config).items():
        for address in addresses:
            address["port_value"] = getattr(ports, field)


def remove_probes(config: Config) -> None:
    """Drop the audio probe listener and its clusters (in place; a no-op without them)."""
    resources = config.get("static_resources", {})
    listeners = resources.get("listeners", [])
    resources["listeners"] = [item for item in listeners if item.get("name") != PROBE_LISTENER]
    probe_clusters = set(PROBE_CLUSTERS.values())
    clusters = resources.get("clusters", [])
    resources["clusters"] = [c for c in clusters if c.get("name") not in probe_clusters]


def connection_manager(config: Config) -> Config:
    """The typed config of the ``tts_ingress`` listener's HTTP connection manager."""
    listener = _named(config.get("static_resources", {}).get("listeners", []), LISTENER, "listener")
    for chain in listener.get("filter_chains", []):
        for network_filter in chain.get("filters", []):
            if network_filter.get("name") == HCM_FILTER:
                typed: Config = network_filter["typed_config"]
                return typed
    raise EnvoyConfigError(f"listener {LISTENER!r} has no {HCM_FILTER}")


def remove_tracing(config: Config) -> None:
    """Drop the connection manager's tracing, the ``otel_collector`` cluster and the tracer's
    runtime keys (in place); a runtime left with nothing but the admin layer goes too (Envoy's
    default runtime has that layer)."""
    connection_manager(config).pop("tracing", None)
    resources = config.get("static_resources", {})
    clusters = resources.get("clusters", [])
    resources["clusters"] = [c for c in clusters if c.get("name") != OTEL_CLUSTER]
    runtime = config.get("layered_runtime")
    if runtime is None:
        return
    layers = []
    for layer in runtime.get("layers", []):
        static = layer.get("static_layer")
        if isinstance(static, dict):
            kept = {k: v for k, v in static.items() if not k.startswith(TRACER_RUNTIME_PREFIX)}
            if not kept:
                continue
            layer = {**layer, "static_layer": kept}
        layers.append(layer)
    if all("admin_layer" in layer for layer in layers):
        config.pop("layered_runtime")
    else:
        runtime["layers"] = layers


def point_tracing(config: Config, target: OtlpTarget) -> None:
    """Send Envoy's spans to ``target`` with its sampling (in place); the config must have a
    tracing block and an ``otel_collector`` cluster."""
    tracing = connection_manager(config).get("tracing")
    if tracing is None:
        raise EnvoyConfigError(f"listener {LISTENER!r} has no tracing block to point at OTLP")
    tracing["random_sampling"] = {"value": target.sampling_percent}
    point_cluster(config, OTEL_CLUSTER, target.host, target.port)
    if target.flush_interval_ms is not None:
        layer = {
            "tracing.opentelemetry.flush_interval_ms": target.flush_interval_ms,
            "tracing.opentelemetry.min_flush_spans": 1,
        }
        runtime = config.setdefault(
            "layered_runtime", {"layers": [{"name": "admin", "admin_layer": {}}]}
        )
        layers = runtime["layers"]
        # Later layers win: after the shipped static layers, before the admin layer.
        admin = next((i for i, item in enumerate(layers) if "admin_layer" in item), len(layers))
        layers.insert(admin, {"name": "otlp_flush", "static_layer": layer})


def point_cluster(config: Config, name: str, host: str, port: int) -> None:
    """Send the cluster ``name`` to ``host:port`` (in place): an IP address makes it STATIC,
    a host name (e.g. a Kubernetes Service) STRICT_DNS, which resolves it and follows changes."""
    cluster = _named(config.get("static_resources", {}).get("clusters", []), name, "cluster")
    try:
        ipaddress.ip_address(host)
        cluster["type"] = "STATIC"
    except ValueError:  # a host name: resolve it
        cluster["type"] = "STRICT_DNS"
    for address in _socket_addresses(cluster):
        address["address"], address["port_value"] = host, port


def pipe_cluster(config: Config, name: str, path: str) -> None:
    """Send the cluster ``name`` to the Unix domain socket ``path`` (in place), e.g. a sidecar
    started with ``--listen unix:PATH``. Envoy calls such an address a pipe."""
    cluster = _named(config.get("static_resources", {}).get("clusters", []), name, "cluster")
    cluster["type"] = "STATIC"
    endpoints = [
        lb_endpoint["endpoint"]
        for locality in cluster.get("load_assignment", {}).get("endpoints", [])
        for lb_endpoint in locality.get("lb_endpoints", [])
    ]
    if not endpoints:
        raise EnvoyConfigError(f"cluster {name!r} has no endpoint address")
    for endpoint in endpoints:
        endpoint["address"] = {"pipe": {"path": path}}


def write_config(config: Config, directory: Path | None = None) -> Path:
    """Write ``config`` as YAML to a new file in ``directory`` (default: the temp dir)."""
    with tempfile.NamedTemporaryFile(
        "w", prefix="envoy-", suffix=".yaml", dir=directory, delete=False, encoding="utf-8"
    ) as handle:
        yaml.safe_dump(config, handle, sort_keys=False)
    return Path(handle.name)
