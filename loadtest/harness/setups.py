"""The three setups under test, started on the same ports with the same config shape.

- ``native``: Envoy alone, weighted clusters 90/10 (see envoy_configs.native_routing).
- ``naive``: Envoy + loadtest/naive_processor.py (share 10 %), the shipped config.
- ``sidecar``: Envoy + ``python -m extproc serve`` with examples/rules.yaml, the shipped config.
- ``traced``: the sidecar setup with decision spans at 100 % sampling, exported over OTLP/gRPC
  to :class:`OtlpSink` (a collector that accepts and discards, on the load CPUs); Envoy's own
  tracer stays off, so the difference to ``sidecar`` is the sidecar's tracing cost.
- ``bare`` (only when asked for): the sidecar setup with metrics off (``--metrics ''``: no
  endpoint, no counting) and tracing off, the reference for "tracing and metrics on".
- ``etraced`` / ``etraced1`` (only when asked for): the sidecar setup with Envoy's own
  OpenTelemetry tracer on, as shipped, at 100 % / 1 % sampling, exporting to the same
  :class:`OtlpSink`; the sidecar's spans off (its default). Envoy then sends a trace context
  on every ext_proc stream, sampled or not.
- ``full`` (only when asked for): end-to-end tracing, Envoy at 100 % and the sidecar's
  decision spans on (the one trace per request the README describes).
- ``ntraced`` / ``ntraced1`` (only when asked for): ``native`` with Envoy's tracer on at
  100 % / 1 % sampling: what Envoy's own tracer costs with no processor at all, the floor
  under every ``etraced`` figure.
- ``uds`` (only when asked for): the sidecar setup with Envoy and the sidecar speaking over
  a Unix domain socket (``--listen unix:PATH``, an Envoy pipe address) instead of TCP.

All three run without the ingress access log. The upstream is :class:`Upstream`, one instant
Envoy shared by every setup of a run. :class:`SystemUnderTest` starts the processor (if any)
and then Envoy with ``--concurrency 1`` and waits until Envoy is ready, its listener accepts and
(with a processor) its health check has marked the processor healthy; leaving the ``with``
block stops everything it started. Processes are pinned to CPUs as :class:`Pinning` says.

The processor's environment is this one minus every ``OTEL_*`` and ``EXTPROC_*`` variable (so
the sidecar runs with its documented defaults: tracing off, metrics on), plus ``extra_env``.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

from extproc.stack import envoy_config
from extproc.stack.envoy_config import EnvoyPorts
from extproc.stack.otlp import OtlpTarget
from extproc.stack.processes import (
    ManagedProcess,
    Service,
    free_port,
    wait_for_grpc_serving,
    wait_for_http,
    wait_for_port,
    wait_until,
)
from extproc.stack.stack import (
    DEFAULT_RULES,
    EXT_PROC_SERVICE,
    HOST,
    NAIVE_PROCESSOR,
    REPO_ROOT,
    find_envoy,
)
from loadtest.harness import envoy_configs, live
from loadtest.harness.tools import pinned

SETUPS = (
    "native", "naive", "sidecar", "traced", "bare", "etraced", "etraced1", "full", "uds",
    "premode", "sampled", "sampled-nocap", "sampled-apart", "sampled-all", "ntraced", "ntraced1",
)  # fmt: skip
DEFAULT_SETUPS = ("native", "naive", "sidecar", "traced")
#: Setups of Envoy alone (weighted clusters, no processor).
NATIVE = {"native", "ntraced", "ntraced1"}
PROCESSORS = set(SETUPS) - NATIVE
#: Setups with Envoy's tracer on, and its sampling percent.
ENVOY_TRACED = {"etraced": 100.0, "etraced1": 1.0, "full": 100.0, "ntraced": 100.0, "ntraced1": 1.0}
#: Setups whose sidecar exports decision spans.
SIDECAR_TRACED = {"traced", "full"}
#: Setups that need the OTLP sink.
NEEDS_SINK = ENVOY_TRACED.keys() | SIDECAR_TRACED
# Live sampling (only when asked for): ``premode`` and the ``sampled*`` setups, see live.py.
READY_TIMEOUT = 30.0
NAIVE_SHARE_PERCENT = "10"


@dataclass(frozen=True)
class Pinning:
    """CPU sets: ``sut`` for Envoy + processor, ``load`` for load generators and the upstream."""

    sut: frozenset[int] | None = None
    load: frozenset[int] | None = None

    @classmethod
    def choose(cls, enabled: bool) -> Pinning:
        """Split pinning (processor + Envoy on the first CPU, the rest on the others) when
        enabled and at least two CPUs are available; otherwise no pinning."""
        cpus = sorted(os.sched_getaffinity(0))
        if not enabled or len(cpus) < 2:
            return cls()
        return cls(sut=frozenset(cpus[:1]), load=frozenset(cpus[1:]))

    def describe(self) -> dict[str, list[int] | None]:
        return {
            "envoy_and_processor": sorted(self.sut) if self.sut else None,
            "load_generator_upstream_and_driver": sorted(self.load) if self.load else None,
        }


@dataclass(frozen=True)
class BenchPorts:
    """Every port of a run; the same for every setup."""

    envoy: EnvoyPorts
    upstream_admin: int
    metrics: int

    @classmethod
    def free(cls) -> BenchPorts:
        envoy = EnvoyPorts(*(free_port() for _ in range(5)))
        return cls(envoy=envoy, upstream_admin=free_port(), metrics=free_port())


@dataclass(frozen=True)
class ProcessorOptions:
    """How to run the sidecar: rules file, extra CLI arguments and environment."""

    rules: Path = DEFAULT_RULES
    extra_args: Sequence[str] = ()
    extra_env: Mapping[str, str] = field(default_factory=dict)
    #: OTLP/gRPC endpoint of the ``traced`` setup (``http://host:port``), from :class:`OtlpSink`.
    otlp_endpoint: str = ""


def tracing_env(endpoint: str) -> dict[str, str]:
    """Decision spans at 100 % sampling (the SDK default, parent-based always-on) to
    ``endpoint``, plaintext."""
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_EXPORTER_OTLP_INSECURE": "true"}


def processor_env(extra: Mapping[str, str]) -> dict[str, str]:
    """This environment without OTEL_* / EXTPROC_*, with the repo importable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "EXTPROC_"))}
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def envoy_argv(config_path: Path) -> list[str]:
    """One Envoy worker, no hot restart (several Envoys share the machine), warnings only."""
    return [
        find_envoy(), "-c", str(config_path), "--concurrency", "1", "--disable-hot-restart",
        "--log-level", "warn",
    ]  # fmt: skip


def write_yaml(config: envoy_config.Config, path: Path) -> Path:
    envoy_config.write_config(config, path.parent).replace(path)
    return path


class Upstream(Service):
    """The instant upstream Envoy (direct 200 on the v1 and v2 ports); a context manager."""

    def __init__(self, ports: BenchPorts, run_dir: Path, pinning: Pinning) -> None:
        self.ports = ports
        config = write_yaml(
            envoy_configs.upstream_config(ports.envoy, ports.upstream_admin),
            run_dir / "upstream-envoy.yaml",
        )
        argv = pinned(envoy_argv(config), pinning.load)
        self.process = ManagedProcess("upstream", argv, run_dir / "upstream-envoy.log")

    def wait_ready(self) -> None:
        admin = f"http://{HOST}:{self.ports.upstream_admin}/ready"
        wait_for_http(admin, READY_TIMEOUT, self.process)
        for version in ("v1", "v2"):
            wait_for_port(HOST, self.ports.envoy.tts(version), READY_TIMEOUT, self.process)


class OtlpSink(Service):
    """The OTLP/gRPC collector of the ``traced`` setup (loadtest/otlp_sink.py), pinned to the
    load CPUs; a context manager."""

    def __init__(self, port: int, run_dir: Path, pinning: Pinning) -> None:
        self.endpoint = f"http://{HOST}:{port}"
        self.port = port
        argv = [sys.executable, "-m", "loadtest.otlp_sink", "--listen", f"{HOST}:{port}"]
        env = processor_env({})
        self.process = ManagedProcess(
            "otlp-sink", pinned(argv, pinning.load), run_dir / "otlp-sink.log", env=env,
            cwd=REPO_ROOT,
        )  # fmt: skip

    def wait_ready(self) -> None:
        wait_for_port(HOST, self.port, READY_TIMEOUT, self.process)


class SystemUnderTest:
    """Envoy (+ processor) of one setup; a context manager that always stops both."""

    def __init__(
        self,
        setup: str,
        ports: BenchPorts,
        run_dir: Path,
        pinning: Pinning,
        options: ProcessorOptions | None = None,
    ) -> None:
        if setup not in SETUPS:
            raise ValueError(f"unknown setup {setup!r}: expected one of {', '.join(SETUPS)}")
        options = options or ProcessorOptions()
        self.setup = setup
        self.ports = ports
        self.pinning = pinning
        run_dir.mkdir(parents=True, exist_ok=True)
        tracing = None
        if setup in ENVOY_TRACED:
            if not options.otlp_endpoint:
                raise ValueError(f"the {setup} setup needs an OTLP endpoint (OtlpSink)")
            sampling = ENVOY_TRACED[setup]
            tracing = OtlpTarget.parse(options.otlp_endpoint, sampling_percent=sampling)
        rendered = envoy_config.render_config(ports.envoy, tracing=tracing)
        shipped = envoy_configs.without_access_log(rendered)
        config = envoy_configs.native_routing(shipped) if setup in NATIVE else shipped
        #: The sidecar's Unix socket (the ``uds`` setup), else None: TCP on the sidecar port.
        self.socket_path = str(run_dir / "sidecar.sock") if setup == "uds" else None
        if self.socket_path is not None:
            envoy_config.pipe_cluster(config, envoy_config.SIDECAR_CLUSTER, self.socket_path)
        if setup == "premode":
            config = envoy_configs.without_mode_override(shipped)
        config_path = write_yaml(config, run_dir / f"envoy-{setup}.yaml")
        self.envoy = ManagedProcess(
            f"envoy-{setup}",
            pinned(envoy_argv(config_path), pinning.sut),
            run_dir / f"envoy-{setup}.log",
        )
        self.processor: ManagedProcess | None = None
        if setup in PROCESSORS:
            argv = pinned(self._processor_argv(options), pinning.sut)
            env = processor_env(options.extra_env)
            env.update(live.LIVE_SETUPS.get(setup, {}))
            if setup in SIDECAR_TRACED:
                if not options.otlp_endpoint:
                    raise ValueError(f"the {setup} setup needs an OTLP endpoint (OtlpSink)")
                env.update(tracing_env(options.otlp_endpoint))
            log = run_dir / f"{setup}.log"
            self.processor = ManagedProcess(setup, argv, log, env=env, cwd=REPO_ROOT)
        self._stack = contextlib.ExitStack()

    @property
    def sidecar_target(self) -> str:
        """The sidecar's address as gRPC dials it."""
        if self.socket_path is not None:
            return f"unix:{self.socket_path}"
        return f"{HOST}:{self.ports.envoy.sidecar}"

    def _processor_argv(self, options: ProcessorOptions) -> list[str]:
        listen = self.sidecar_target
        if self.setup == "naive":
            return [sys.executable, str(NAIVE_PROCESSOR), "--listen", listen, "--share",
                    NAIVE_SHARE_PERCENT]  # fmt: skip
        metrics = "" if self.setup == "bare" else f"{HOST}:{self.ports.metrics}"
        serve = ["serve", "--rules", str(options.rules), "--listen", listen, "--metrics", metrics]
        return [sys.executable, "-m", "extproc", *serve, *options.extra_args]

    @property
    def live(self) -> bool:
        """A live-sampling setup (its sidecar samples)."""
        return self.setup in live.LIVE_SETUPS

    @property
    def metrics_address(self) -> str:
        return f"{HOST}:{self.ports.metrics}"

    @property
    def admin_url(self) -> str:
        return f"http://{HOST}:{self.ports.envoy.admin}"

    def __enter__(self) -> Self:
        try:
            if self.processor is not None:
                self._stack.enter_context(self.processor)
                target = self.sidecar_target
                wait_for_grpc_serving(target, EXT_PROC_SERVICE, READY_TIMEOUT, self.processor)
            self._stack.enter_context(self.envoy)
            wait_for_http(self.admin_url + "/ready", READY_TIMEOUT, self.envoy)
            wait_for_port(HOST, self.ports.envoy.listener, READY_TIMEOUT, self.envoy)
            if self.processor is not None:
                what = "Envoy to see the processor healthy"
                wait_until(self._processor_healthy, what, READY_TIMEOUT, self.envoy)
            if self.processor is not None and self.live:
                ready = functools.partial(live.scorer_ready, self.metrics_address)
                wait_until(ready, "the scorer's warm-up", live.READY_TIMEOUT, self.processor)
                if self.setup in live.SCORER_APART:
                    live.move_scorer(self.processor.pid, self.pinning.load)
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stack.close()

    def _processor_healthy(self) -> bool:
        with urllib.request.urlopen(self.admin_url + "/clusters", timeout=2) as response:
            text = response.read().decode()
        target = self.socket_path or f"{HOST}:{self.ports.envoy.sidecar}"
        prefix = f"{envoy_config.SIDECAR_CLUSTER}::{target}::health_flags::"
        return [line[len(prefix) :] for line in text.splitlines() if line.startswith(prefix)] == [
            "healthy"
        ]

    def stats(self, pattern: str) -> dict[str, int]:
        """Envoy counters whose name matches the regex ``pattern`` (absent ones: missing)."""
        url = f"{self.admin_url}/stats?format=json&filter={urllib.parse.quote(pattern)}"
        with urllib.request.urlopen(url, timeout=5) as response:
            data = json.loads(response.read())
        return {
            s["name"]: int(s["value"])
            for s in data.get("stats", [])
            if isinstance(s.get("value"), int)
        }

    def processes(self) -> list[ManagedProcess]:
        return [p for p in (self.processor, self.envoy) if p is not None]
