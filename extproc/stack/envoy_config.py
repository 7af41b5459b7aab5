"""Load the shipped Envoy config (envoy/envoy.yaml) and re-port it for other runs.

There is one Envoy config; the stack and the tests run it as shipped except for its ports,
which are rewritten structurally: the admin address, the listener named ``tts_ingress`` and
the endpoints of the clusters ``extproc_sidecar``, ``tts_v1`` and ``tts_v2``. A config that
lacks one of these names raises :class:`EnvoyConfigError` rather than silently keeping a port.
"""

from __future__ import annotations

import copy
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

DEFAULT_CONFIG_PATH = Path(__file__).resolve().parents[2] / "envoy" / "envoy.yaml"
LISTENER = "tts_ingress"
SIDECAR_CLUSTER = "extproc_sidecar"
TTS_CLUSTERS = {"v1": "tts_v1", "v2": "tts_v2"}

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
    """For each EnvoyPorts field, the socket_address mappings that carry that port."""
    resources = config.get("static_resources", {})
    clusters = resources.get("clusters", [])
    listener = _named(resources.get("listeners", []), LISTENER, "listener")
    return {
        "listener": [listener["address"]["socket_address"]],
        "admin": [config["admin"]["address"]["socket_address"]],
        "sidecar": _socket_addresses(_named(clusters, SIDECAR_CLUSTER, "cluster")),
        "tts_v1": _socket_addresses(_named(clusters, TTS_CLUSTERS["v1"], "cluster")),
        "tts_v2": _socket_addresses(_named(clusters, TTS_CLUSTERS["v2"], "cluster")),
    }


def ports_of(config: Config) -> EnvoyPorts:
    """The ports a config uses (for the shipped one: the documented defaults)."""
    slots = _port_slots(config)
    return EnvoyPorts(**{field: int(slots[field][0]["port_value"]) for field in slots})


def default_ports() -> EnvoyPorts:
    """The documented default ports, read from the shipped config itself."""
    return ports_of(load_config())


def render_config(ports: EnvoyPorts, path: Path | None = None) -> Config:
    """A copy of the config at ``path`` with every port replaced by those in ``ports``."""
    config = copy.deepcopy(load_config(path))
    for field, addresses in _port_slots(config).items():
        for address in addresses:
            address["port_value"] = getattr(ports, field)
    return config


def write_config(config: Config, directory: Path | None = None) -> Path:
    """Write ``config`` as YAML to a new file in ``directory`` (default: the temp dir)."""
    with tempfile.NamedTemporaryFile(
        "w", prefix="envoy-", suffix=".yaml", dir=directory, delete=False, encoding="utf-8"
    ) as handle:
        yaml.safe_dump(config, handle, sort_keys=False)
    return Path(handle.name)
