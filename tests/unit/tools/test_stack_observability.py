"""The stack's observability wiring, without starting anything: Envoy's tracing block is
removed or pointed at an OTLP endpoint (and Envoy accepts both), the sidecar gets matching
OTEL_* variables, and the local Prometheus config is the deploy/ one with the stack's targets.
"""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from extproc.stack import command, envoy_config, prometheus
from extproc.stack.envoy_config import EnvoyConfigError, EnvoyPorts
from extproc.stack.otlp import OtlpTarget, sidecar_otel_env
from extproc.stack.stack import find_envoy

PORTS = EnvoyPorts(listener=20000, admin=29901, sidecar=25051, tts_v1=28081, tts_v2=28082)
hcm = envoy_config.connection_manager


def envoy_validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [find_envoy(), "--mode", "validate", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def collector(config: dict[str, Any]) -> dict[str, Any] | None:
    clusters = config["static_resources"]["clusters"]
    found = [c for c in clusters if c["name"] == envoy_config.OTEL_CLUSTER]
    return found[0] if found else None


def test_shipped_config_traces_with_opentelemetry_to_the_otel_collector_cluster() -> None:
    tracing = hcm(envoy_config.load_config())["tracing"]
    provider = tracing["provider"]
    assert provider["name"] == "envoy.tracers.opentelemetry"
    assert provider["typed_config"]["grpc_service"]["envoy_grpc"]["cluster_name"] == (
        envoy_config.OTEL_CLUSTER
    )
    assert provider["typed_config"]["service_name"] == "tts-gateway"
    # Shipped at 1 % (production sampling); the local stack asks for its own (default 100).
    assert tracing["random_sampling"] == {"value": 1}
    # No router span per request (the ingress span carries the upstream cluster): ~10 us less.
    assert tracing["spawn_upstream_span"] is False
    # The tracer exports in batches of up to 512 spans, at least every second (its default
    # exports every 5 spans); the admin layer keeps /runtime_modify.
    export, admin = envoy_config.load_config()["layered_runtime"]["layers"]
    assert export["static_layer"] == {
        "tracing.opentelemetry.min_flush_spans": 512,
        "tracing.opentelemetry.flush_interval_ms": 1000,
    }
    assert admin == {"name": "admin", "admin_layer": {}}
    # The client's x-request-id stays as sent (Envoy would pack its trace decision into it).
    uuid_config = hcm(envoy_config.load_config())["request_id_extension"]["typed_config"]
    assert uuid_config["pack_trace_reason"] is False
    # The ext_proc stream's span must be emitted: unemitted, its context reaches the sidecar
    # flagged unsampled and the decision span is dropped.
    (ext_proc,) = [
        f for f in hcm(envoy_config.load_config())["http_filters"] if "ext_proc" in f["name"]
    ]
    assert ext_proc["typed_config"].get("emit_client_span", True) is True
    shipped_collector = collector(envoy_config.load_config())
    assert shipped_collector is not None
    http = shipped_collector["typed_extension_protocol_options"]
    assert "http2_protocol_options" in http[next(iter(http))]["explicit_http_config"]


def test_without_an_endpoint_tracing_and_its_cluster_are_removed(tmp_path: Path) -> None:
    rendered = envoy_config.render_config(PORTS)
    assert "tracing" not in hcm(rendered)
    assert collector(rendered) is None
    assert "layered_runtime" not in rendered
    result = envoy_validate(envoy_config.write_config(rendered, tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_an_endpoint_points_the_cluster_and_sets_sampling_and_flush(tmp_path: Path) -> None:
    target = OtlpTarget("127.0.0.1", 14317, sampling_percent=12.5, flush_interval_ms=100)
    rendered = envoy_config.render_config(PORTS, tracing=target)
    assert hcm(rendered)["tracing"]["random_sampling"] == {"value": 12.5}
    found = collector(rendered)
    assert found is not None and found["type"] == "STATIC"
    address = found["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
    assert address["socket_address"] == {"address": "127.0.0.1", "port_value": 14317}
    # The faster flush comes after the shipped batching layer (later layers win), before admin.
    shipped, static, admin = rendered["layered_runtime"]["layers"]
    assert shipped["name"] == "tracing_export"
    assert static["static_layer"] == {
        "tracing.opentelemetry.flush_interval_ms": 100,
        "tracing.opentelemetry.min_flush_spans": 1,
    }
    assert "admin_layer" in admin
    assert envoy_config.ports_of(rendered) == PORTS
    result = envoy_validate(envoy_config.write_config(rendered, tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_removing_tracing_keeps_runtime_keys_of_others() -> None:
    config = envoy_config.load_config()
    config["layered_runtime"]["layers"][0]["static_layer"][
        "overload.global_downstream_max_connections"
    ] = 50000
    envoy_config.remove_tracing(config)
    (static, admin) = config["layered_runtime"]["layers"]
    assert static["static_layer"] == {"overload.global_downstream_max_connections": 50000}
    assert "admin_layer" in admin


def test_a_host_name_endpoint_is_resolved_by_dns() -> None:
    rendered = envoy_config.render_config(PORTS, tracing=OtlpTarget.parse("otel-collector:4317"))
    found = collector(rendered)
    assert found is not None and found["type"] == "STRICT_DNS"


@pytest.mark.parametrize(
    ("endpoint", "host", "port", "url"),
    [
        ("127.0.0.1:4317", "127.0.0.1", 4317, "http://127.0.0.1:4317"),
        ("http://127.0.0.1:14317", "127.0.0.1", 14317, "http://127.0.0.1:14317"),
        ("http://localhost:4317/", "localhost", 4317, "http://localhost:4317"),
        ("[::1]:4317", "::1", 4317, "http://[::1]:4317"),
    ],
)
def test_otlp_endpoint_forms(endpoint: str, host: str, port: int, url: str) -> None:
    target = OtlpTarget.parse(endpoint)
    assert (target.host, target.port, target.url) == (host, port, url)


@pytest.mark.parametrize(
    "endpoint", ["https://collector:4317", "127.0.0.1", "http://h:4317/v1/traces", "h:99999", ""]
)
def test_bad_otlp_endpoints_are_rejected(endpoint: str) -> None:
    with pytest.raises(ValueError, match="OTLP"):
        OtlpTarget.parse(endpoint)


def test_sampling_outside_0_to_100_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"within 0\.\.100"):
        OtlpTarget("127.0.0.1", 4317, sampling_percent=101)


def test_a_config_without_tracing_cannot_be_pointed(tmp_path: Path) -> None:
    path = tmp_path / "envoy.yaml"
    path.write_text(yaml.safe_dump(envoy_config.render_config(PORTS)))
    with pytest.raises(EnvoyConfigError, match="no tracing block"):
        envoy_config.render_config(PORTS, path, tracing=OtlpTarget("127.0.0.1", 4317))


def test_sidecar_env_follows_the_target() -> None:
    base = {"PATH": "/bin", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://elsewhere:4317"}
    off = sidecar_otel_env({**base, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:1"}, None)
    assert off == {"PATH": "/bin"}
    target = OtlpTarget("127.0.0.1", 14317, sampling_percent=25, flush_interval_ms=50)
    on = sidecar_otel_env({**base, "OTEL_SERVICE_NAME": "mine"}, target)
    assert on == {
        "PATH": "/bin",
        "OTEL_SERVICE_NAME": "mine",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:14317",
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.25",
        "OTEL_BSP_SCHEDULE_DELAY": "50",
    }


def test_local_prometheus_runs_the_deploy_config_with_the_stack_targets() -> None:
    config = prometheus.render_prometheus_config("127.0.0.1:29901", "127.0.0.1:29464", "1s")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["envoy"]["static_configs"] == [{"targets": ["127.0.0.1:29901"]}]
    assert jobs["envoy"]["metrics_path"] == "/stats/prometheus"
    assert jobs["tts-canary-sidecar"]["static_configs"] == [{"targets": ["127.0.0.1:29464"]}]
    assert config["rule_files"] == [str(prometheus.DEPLOY_DIR / "alerts.yaml")]
    assert config["global"]["scrape_interval"] == config["global"]["evaluation_interval"] == "1s"


def test_a_prometheus_config_without_the_sidecar_job_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump({"scrape_configs": [{"job_name": "envoy"}]}))
    with pytest.raises(prometheus.PrometheusConfigError, match="tts-canary-sidecar"):
        prometheus.render_prometheus_config("a:1", "b:2", path=path)


def stack_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    command.register(parser.add_subparsers())
    return parser.parse_args(["stack", *argv])


def test_stack_command_is_untraced_and_without_prometheus_by_default(tmp_path: Path) -> None:
    stack = command.stack_from_args(stack_args("--run-dir", str(tmp_path)))
    assert stack.tracing is None and stack.prometheus is None


def test_stack_command_flags_turn_on_tracing_and_prometheus(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(command, "find_prometheus", lambda: "/usr/bin/prometheus")
    args = stack_args(
        "--run-dir", str(tmp_path), "--otlp-endpoint", "127.0.0.1:4317", "--trace-sampling", "5"
    )
    stack = command.stack_from_args(args)
    assert stack.tracing == OtlpTarget("127.0.0.1", 4317, sampling_percent=5.0)
    args = stack_args("--run-dir", str(tmp_path), "--prometheus")
    prometheus_server = command.stack_from_args(args).prometheus
    assert prometheus_server is not None and prometheus_server.url == "http://127.0.0.1:9090"


def test_stack_command_without_a_prometheus_binary_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(command, "find_prometheus", lambda: None)
    with pytest.raises(ValueError, match="apt-get install prometheus"):
        command.stack_from_args(stack_args("--run-dir", str(tmp_path), "--prometheus"))
