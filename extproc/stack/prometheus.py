"""A real Prometheus (the Debian ``prometheus`` binary) scraping the local stack.

It runs the checked-in deploy/prometheus/prometheus.yml with three structural changes: the
targets of job ``envoy`` become Envoy's admin address (``/stats/prometheus``), those of job
``tts-canary-sidecar`` the sidecar's metrics address, and the rule files become absolute
paths into deploy/prometheus/ (so the alerts in alerts.yaml are evaluated too). A job missing
from the file raises :class:`PrometheusConfigError`. Optionally the scrape and evaluation
interval is shortened (the local stack uses 1 s, so numbers appear at once).

:class:`PrometheusServer` listens on 127.0.0.1 only, keeps its TSDB in a fresh temp dir that
is removed when it stops, and is ready when ``/-/ready`` answers 200.
"""

from __future__ import annotations

import copy
import json
import shutil
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import yaml

from extproc.stack.processes import ManagedProcess, wait_for_http

DEPLOY_DIR = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
DEFAULT_CONFIG_PATH = DEPLOY_DIR / "prometheus.yml"
DEFAULT_PORT = 9090
ENVOY_JOB = "envoy"
SIDECAR_JOB = "tts-canary-sidecar"
HOST = "127.0.0.1"


class PrometheusConfigError(ValueError):
    """The Prometheus config does not have the shape this module rewrites."""


def find_prometheus() -> str | None:
    """The ``prometheus`` binary on PATH (Debian package ``prometheus``), or None."""
    return shutil.which("prometheus")


def _job(config: dict[str, Any], name: str) -> dict[str, Any]:
    for job in config.get("scrape_configs", []):
        if job.get("job_name") == name:
            found: dict[str, Any] = job
            return found
    raise PrometheusConfigError(f"no scrape job named {name!r} in the Prometheus config")


def render_prometheus_config(
    envoy_admin: str,
    sidecar_metrics: str,
    scrape_interval: str | None = None,
    path: Path = DEFAULT_CONFIG_PATH,
) -> dict[str, Any]:
    """The config at ``path`` scraping Envoy's admin at ``envoy_admin`` and the sidecar's
    metrics at ``sidecar_metrics`` (both host:port), rule files made absolute."""
    config = copy.deepcopy(yaml.safe_load(path.read_text(encoding="utf-8")))
    for name, target in ((ENVOY_JOB, envoy_admin), (SIDECAR_JOB, sidecar_metrics)):
        _job(config, name)["static_configs"] = [{"targets": [target]}]
    config["rule_files"] = [str(path.parent / rule) for rule in config.get("rule_files", [])]
    if scrape_interval is not None:
        config.setdefault("global", {}).update(
            scrape_interval=scrape_interval, evaluation_interval=scrape_interval
        )
    return config


class PrometheusServer:
    """One Prometheus process on 127.0.0.1:``port``; a context manager that always stops it."""

    def __init__(
        self,
        run_dir: Path,
        *,
        port: int,
        envoy_admin: str,
        sidecar_metrics: str,
        scrape_interval: str | None = None,
        binary: str | None = None,
        ready_timeout: float = 30.0,
    ) -> None:
        """``run_dir`` gets the rendered config and the log; nothing starts before start()."""
        self.port = port
        self.run_dir = run_dir
        self.config_path = run_dir / "prometheus.yml"
        self.ready_timeout = ready_timeout
        self._config = render_prometheus_config(envoy_admin, sidecar_metrics, scrape_interval)
        self._binary = binary or find_prometheus()
        self._storage: Path | None = None
        self.process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def storage_dir(self) -> Path | None:
        """The TSDB directory while running (removed on stop), else None."""
        return self._storage

    def start(self) -> Self:
        """Write the config, start Prometheus on a fresh TSDB dir, wait until it is ready."""
        if self._binary is None:
            raise FileNotFoundError(
                "no prometheus binary on PATH: install the Debian package 'prometheus'"
            )
        self.config_path.write_text(yaml.safe_dump(self._config, sort_keys=False), "utf-8")
        self._storage = Path(tempfile.mkdtemp(prefix="tts-prometheus-"))
        argv = [
            self._binary,
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self._storage}",
            f"--web.listen-address={HOST}:{self.port}",
            "--storage.tsdb.retention.time=1d",
        ]
        self.process = ManagedProcess("prometheus", argv, self.run_dir / "prometheus.log")
        try:
            self.process.start()
            wait_for_http(self.url + "/-/ready", self.ready_timeout, self.process)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the process and remove its TSDB dir. Safe to call twice."""
        if self.process is not None:
            self.process.stop()
        if self._storage is not None:
            shutil.rmtree(self._storage, ignore_errors=True)
            self._storage = None

    def get(self, path: str) -> dict[str, Any]:
        """GET an HTTP API ``path`` (e.g. ``/api/v1/rules``); the JSON body (RuntimeError
        unless its status is success)."""
        with urllib.request.urlopen(self.url + path, timeout=5) as response:
            body: dict[str, Any] = json.loads(response.read())
        if body.get("status") != "success":
            raise RuntimeError(f"Prometheus {path} failed: {body}")
        return body

    def query(self, promql: str) -> list[dict[str, Any]]:
        """Instant query through the HTTP API; the ``data.result`` list."""
        body = self.get(f"/api/v1/query?{urllib.parse.urlencode({'query': promql})}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
