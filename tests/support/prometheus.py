"""A real Prometheus (the Debian ``prometheus`` binary) on a free loopback port, scraping the
targets a test gives it every ``interval``; stopped when the ``with`` block ends."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

from extproc.stack.processes import ManagedProcess, free_port, wait_for_http
from tests.support.tools import require_tool


@contextmanager
def running_prometheus(
    run_dir: Path,
    scrape_configs: list[dict[str, object]],
    interval: str = "1s",
    scrape_self: bool = False,
) -> Iterator[str]:
    """Prometheus with ``scrape_configs`` (Prometheus' own schema), plus a job ``self``
    scraping its own /metrics with ``scrape_self``; yields its base URL."""
    binary = require_tool("prometheus", "prometheus")
    run_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    if scrape_self:
        own = {"job_name": "self", "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}
        scrape_configs = [*scrape_configs, own]
    config = run_dir / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": interval, "evaluation_interval": interval},
                "scrape_configs": scrape_configs,
            }
        )
    )
    argv = [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={run_dir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    url = f"http://127.0.0.1:{port}"
    with ManagedProcess("prometheus", argv, run_dir / "prometheus.log") as process:
        wait_for_http(url + "/-/ready", 30, process)
        yield url


def exporter_job(name: str, address: str) -> dict[str, object]:
    """A scrape job for an exporter whose own pod / namespace labels must win, as the
    kube-prometheus ServiceMonitors for dcgm-exporter and the kubelet's cAdvisor do
    (``honorLabels: true``). The target labels a Kubernetes service discovery would attach
    (the exporter's own pod and namespace) are set too, so a job without honor_labels would
    rename the exporter's labels to exported_pod / exported_namespace."""
    return {
        "job_name": name,
        "honor_labels": True,
        "static_configs": [
            {
                "targets": [address],
                "labels": {"namespace": "gpu-operator", "pod": "nvidia-dcgm-exporter-7k2xq"},
            }
        ],
    }
