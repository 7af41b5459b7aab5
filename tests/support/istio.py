"""Structural checks of the Istio objects (kubernetes-validate has no schemas for CRDs).

Each check returns a list of problems (empty = fine): the apiVersion Istio serves the kind
at, the required fields, unknown keys at the levels we write, and the enums of EnvoyFilter.
Istio's own validation (istioctl validate) is stricter; it is not available here.
"""

from __future__ import annotations

from typing import Any

Obj = dict[str, Any]

API_VERSIONS = {
    "EnvoyFilter": {"networking.istio.io/v1alpha3"},
    "VirtualService": {"networking.istio.io/v1", "networking.istio.io/v1beta1"},
    "Gateway": {"networking.istio.io/v1", "networking.istio.io/v1beta1"},
}
APPLY_TO = {
    "LISTENER",
    "FILTER_CHAIN",
    "NETWORK_FILTER",
    "HTTP_FILTER",
    "ROUTE_CONFIGURATION",
    "VIRTUAL_HOST",
    "HTTP_ROUTE",
    "CLUSTER",
    "EXTENSION_CONFIG",
    "BOOTSTRAP",
    "LISTENER_FILTER",
}
CONTEXTS = {"ANY", "SIDECAR_INBOUND", "SIDECAR_OUTBOUND", "GATEWAY"}
OPERATIONS = {
    "MERGE",
    "ADD",
    "REMOVE",
    "INSERT_BEFORE",
    "INSERT_AFTER",
    "INSERT_FIRST",
    "REPLACE",
}
PROTOCOLS = {"HTTP", "HTTPS", "GRPC", "HTTP2", "MONGO", "TCP", "TLS"}


def _keys(where: str, mapping: Any, allowed: set[str], required: set[str]) -> list[str]:
    if not isinstance(mapping, dict):
        return [f"{where}: not a mapping"]
    problems = [f"{where}.{k}: unknown key" for k in mapping if k not in allowed]
    problems += [f"{where}.{k}: required" for k in sorted(required - mapping.keys())]
    return problems


def check(obj: Obj) -> list[str]:
    kind = obj.get("kind", "")
    where = f"{kind}/{obj.get('metadata', {}).get('name')}"
    problems = _keys(where, obj, {"apiVersion", "kind", "metadata", "spec"}, {"metadata", "spec"})
    if obj.get("apiVersion") not in API_VERSIONS.get(kind, set()):
        problems.append(f"{where}: apiVersion {obj.get('apiVersion')!r} is not one Istio serves")
    metadata = obj.get("metadata", {})
    problems += _keys(f"{where}.metadata", metadata, {"name", "namespace", "labels"}, {"name"})
    spec = obj.get("spec", {})
    checker = {"EnvoyFilter": _envoy_filter, "VirtualService": _virtual_service}
    problems += checker.get(kind, _gateway)(f"{where}.spec", spec)
    return problems


def _envoy_filter(where: str, spec: Obj) -> list[str]:
    problems = _keys(where, spec, {"workloadSelector", "configPatches", "priority"}, set())
    selector = spec.get("workloadSelector", {})
    problems += _keys(f"{where}.workloadSelector", selector, {"labels"}, {"labels"})
    patches = spec.get("configPatches") or []
    if not patches:
        problems.append(f"{where}.configPatches: required, non-empty")
    for i, patch in enumerate(patches):
        at = f"{where}.configPatches[{i}]"
        problems += _keys(at, patch, {"applyTo", "match", "patch"}, {"applyTo", "patch"})
        if patch.get("applyTo") not in APPLY_TO:
            problems.append(f"{at}.applyTo: {patch.get('applyTo')!r} is not one of {APPLY_TO}")
        match = patch.get("match", {})
        if match.get("context", "ANY") not in CONTEXTS:
            problems.append(f"{at}.match.context: {match.get('context')!r}")
        body = patch.get("patch", {})
        problems += _keys(f"{at}.patch", body, {"operation", "value", "filterClass"}, {"operation"})
        if body.get("operation") not in OPERATIONS:
            problems.append(f"{at}.patch.operation: {body.get('operation')!r}")
        if body.get("operation") != "REMOVE" and not isinstance(body.get("value"), dict):
            problems.append(f"{at}.patch.value: required for {body.get('operation')}")
    return problems


def _virtual_service(where: str, spec: Obj) -> list[str]:
    problems = _keys(where, spec, {"hosts", "gateways", "http", "exportTo"}, {"hosts", "http"})
    for i, route in enumerate(spec.get("http", [])):
        at = f"{where}.http[{i}]"
        problems += _keys(at, route, {"name", "match", "route", "headers"}, {"route"})
        for j, destination in enumerate(route.get("route", [])):
            target = destination.get("destination", {})
            problems += _keys(f"{at}.route[{j}].destination", target, {"host", "port"}, {"host"})
    return problems


def _gateway(where: str, spec: Obj) -> list[str]:
    problems = _keys(where, spec, {"selector", "servers"}, {"selector", "servers"})
    for i, server in enumerate(spec.get("servers", [])):
        at = f"{where}.servers[{i}]"
        problems += _keys(at, server, {"port", "hosts", "tls", "name"}, {"port", "hosts"})
        port = server.get("port", {})
        problems += _keys(
            f"{at}.port", port, {"number", "name", "protocol"}, {"number", "protocol"}
        )
        if port.get("protocol") not in PROTOCOLS:
            problems.append(f"{at}.port.protocol: {port.get('protocol')!r}")
    return problems
