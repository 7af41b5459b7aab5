"""The shipped Envoy config: Envoy accepts it, its ports are rewritten structurally, and the
settings the design relies on are present (so an edit that drops one fails here first)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from extproc.stack import envoy_config
from extproc.stack.envoy_config import EnvoyConfigError, EnvoyPorts
from extproc.stack.otlp import OtlpTarget
from extproc.stack.stack import find_envoy

DOCUMENTED = EnvoyPorts(
    listener=10000, admin=9901, sidecar=50051, tts_v1=18081, tts_v2=18082, probe=10001
)
OTHER = EnvoyPorts(listener=20000, admin=29901, sidecar=25051, tts_v1=28081, tts_v2=28082)
DOCUMENTED_OTLP = OtlpTarget("127.0.0.1", 4317, sampling_percent=1.0)  # as shipped: 1 %


def envoy_validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [find_envoy(), "--mode", "validate", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def hcm(config: dict[str, Any]) -> dict[str, Any]:
    listener = config["static_resources"]["listeners"][0]
    typed: dict[str, Any] = listener["filter_chains"][0]["filters"][0]["typed_config"]
    return typed


def cluster(config: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [c for c in config["static_resources"]["clusters"] if c["name"] == name]
    return found


def ext_proc(config: dict[str, Any]) -> dict[str, Any]:
    (found,) = [
        f for f in hcm(config)["http_filters"] if f["name"] == "envoy.filters.http.ext_proc"
    ]
    typed: dict[str, Any] = found["typed_config"]
    return typed


def test_shipped_config_passes_envoy_validate() -> None:
    result = envoy_validate(envoy_config.DEFAULT_CONFIG_PATH)
    assert result.returncode == 0, result.stdout + result.stderr


def test_shipped_config_uses_the_documented_ports() -> None:
    assert envoy_config.default_ports() == DOCUMENTED


def test_rendered_config_carries_the_new_ports_and_validates(tmp_path: Path) -> None:
    rendered = envoy_config.render_config(OTHER)
    assert envoy_config.ports_of(rendered) == OTHER
    path = envoy_config.write_config(rendered, tmp_path)
    assert path.parent == tmp_path
    assert yaml.safe_load(path.read_text()) == rendered
    result = envoy_validate(path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_rendering_changes_only_ports() -> None:
    shipped = envoy_config.load_config()
    rendered = envoy_config.render_config(DOCUMENTED, tracing=DOCUMENTED_OTLP)
    assert rendered == shipped
    assert envoy_config.render_config(OTHER) != shipped
    assert envoy_config.load_config() == shipped  # the shipped file is never modified


def test_a_config_without_a_named_cluster_is_rejected(tmp_path: Path) -> None:
    config = envoy_config.load_config()
    config["static_resources"]["clusters"] = [
        c for c in config["static_resources"]["clusters"] if c["name"] != "tts_v2"
    ]
    path = tmp_path / "envoy.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(EnvoyConfigError, match="no cluster named 'tts_v2'"):
        envoy_config.render_config(OTHER, path)


def test_client_cohort_header_is_removed_before_routing() -> None:
    (early,) = hcm(envoy_config.load_config())["early_header_mutation_extensions"]
    assert early["typed_config"]["mutations"] == [{"remove": "x-tts-cohort"}]


def test_ext_proc_sends_request_headers_only_and_fails_open() -> None:
    config = ext_proc(envoy_config.load_config())
    assert config["failure_mode_allow"] is True
    assert config["processing_mode"] == {
        "request_header_mode": "SEND",
        "response_header_mode": "SKIP",
        "request_body_mode": "NONE",
        "response_body_mode": "NONE",
        "request_trailer_mode": "SKIP",
        "response_trailer_mode": "SKIP",
    }
    assert config["message_timeout"] == "0.2s"
    assert config["metadata_options"]["receiving_namespaces"]["untyped"] == ["tts_canary"]


def test_routes_send_only_v2_to_tts_v2_and_skip_the_processor_on_healthz() -> None:
    routes = hcm(envoy_config.load_config())["route_config"]["virtual_hosts"][0]["routes"]
    healthz, v2, default = routes
    assert healthz["match"] == {"path": "/healthz"}
    per_route = healthz["typed_per_filter_config"]["envoy.filters.http.ext_proc"]
    assert per_route["disabled"] is True
    assert v2["match"]["headers"] == [{"name": "x-tts-cohort", "string_match": {"exact": "v2"}}]
    assert v2["route"] == {"cluster": "tts_v2"}
    assert default == {"match": {"prefix": "/"}, "route": {"cluster": "tts_v1"}}


def test_sidecar_cluster_is_http2_health_checked_and_never_panics() -> None:
    sidecar = cluster(envoy_config.load_config(), "extproc_sidecar")
    options = sidecar["typed_extension_protocol_options"]
    http = options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    assert "http2_protocol_options" in http["explicit_http_config"]
    (check,) = sidecar["health_checks"]
    assert (
        check["grpc_health_check"]["service_name"] == "envoy.service.ext_proc.v3.ExternalProcessor"
    )
    assert sidecar["common_lb_config"]["healthy_panic_threshold"] == {"value": 0}
    assert sidecar["common_lb_config"]["update_merge_window"] == "0s"


def test_access_log_carries_the_decision_and_the_upstream() -> None:
    (log,) = hcm(envoy_config.load_config())["access_log"]
    fields = log["typed_config"]["log_format"]["json_format"]
    for key in ("cohort", "reason", "rule", "bucket"):
        assert fields[key] == f"%DYNAMIC_METADATA(tts_canary:{key})%"
    assert fields["upstream_cluster"] == "%UPSTREAM_CLUSTER%"
    assert fields["status"] == "%RESPONSE_CODE%"
