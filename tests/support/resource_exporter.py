"""A stand-in for the NVIDIA DCGM exporter and the kubelet's cAdvisor endpoint in one real
HTTP server: the metric families and labels those exporters serve in Kubernetes, with values
a test changes while Prometheus scrapes them.

Series (Prometheus text format 0.0.4, one scrape = one consistent snapshot):
- ``DCGM_FI_DEV_FB_USED`` / ``DCGM_FI_DEV_FB_FREE`` (MiB) and ``DCGM_FI_DEV_GPU_UTIL`` (%)
  per GPU, labelled as dcgm-exporter does (gpu, UUID, device, modelName, Hostname,
  DCGM_FI_DRIVER_VERSION) plus, for a GPU held by a pod, that pod's container / namespace /
  pod. GPU 0 is the v1 pod's, GPU 1 the v2 pod's, GPU 2 belongs to no pod and is nearly full
  (a query that forgets its pod selector sees it).
- ``container_memory_working_set_bytes`` (gauge) and ``container_cpu_usage_seconds_total``
  (counter, integrated from the cores set over time) per pod as cAdvisor does: the model's
  container, the pause container (container="POD") and the pod total (container="").
"""

from __future__ import annotations

import hashlib
import http.server
import threading
import time
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Self

NAMESPACE = "tts"
CONTAINER = "tts"
MIB = 1 << 20


@dataclass(frozen=True, slots=True)
class Usage:
    """What one deployment's pod uses; ``gpu_total_mib`` is its GPU's framebuffer."""

    gpu_used_mib: float = 8_000
    gpu_total_mib: float = 24_000  # an NVIDIA L4
    gpu_util: float = 35.0
    cpu_cores: float = 1.0
    memory_bytes: float = 6 * 1024 * MIB


@dataclass
class _Pod:
    name: str
    gpu: int
    usage: Usage = field(default_factory=Usage)
    cpu_seconds: float = 0.0
    cpu_since: float = field(default_factory=time.monotonic)


PODS = {"v1": "tts-v1-5c7d9f6b8-x2x4k", "v2": "tts-v2-7b9c5d8f6-q8w2m"}


class ResourceExporter:
    """``with ResourceExporter() as e:`` serves ``e.url`` (``/metrics``); ``e.set("v2", ...)``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pods = {d: _Pod(name, gpu) for gpu, (d, name) in enumerate(PODS.items())}
        self.scrapes = 0
        exporter = self

        class Handler(http.server.BaseHTTPRequestHandler):
            disable_nagle_algorithm = True

            def do_GET(self) -> None:
                body = exporter.exposition().encode()
                self.send_response(200 if self.path == "/metrics" else 404)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                with exporter._lock:
                    exporter.scrapes += 1

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.address = f"127.0.0.1:{self._server.server_address[1]}"
        self.url = f"http://{self.address}/metrics"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def set(self, deployment: str, **changes: float) -> None:
        """Change what ``deployment``'s pod uses from now on (``Usage`` field names)."""
        with self._lock:
            pod = self._pods[deployment]
            self._integrate(pod)
            pod.usage = replace(pod.usage, **changes)

    def usage(self, deployment: str) -> Usage:
        with self._lock:
            return self._pods[deployment].usage

    def exposition(self) -> str:
        with self._lock:
            for pod in self._pods.values():
                self._integrate(pod)
            pods = [replace(p) for p in self._pods.values()]
        return _dcgm(pods) + _cadvisor(pods)

    @staticmethod
    def _integrate(pod: _Pod) -> None:
        now = time.monotonic()
        pod.cpu_seconds += pod.usage.cpu_cores * (now - pod.cpu_since)
        pod.cpu_since = now


def _labels(**labels: str) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


def _gpu_labels(gpu: int, pod: str | None) -> str:
    labels = {
        "gpu": str(gpu),
        "UUID": f"GPU-3f1c9a7e-0b6d-4e2a-9c1b-5d8e7f6a4b2{gpu}",
        "device": f"nvidia{gpu}",
        "modelName": "NVIDIA L4",
        "Hostname": "gpu-node-1",
        "DCGM_FI_DRIVER_VERSION": "550.54.15",
    }
    if pod is not None:
        labels |= {"container": CONTAINER, "namespace": NAMESPACE, "pod": pod}
    return _labels(**labels)


def _dcgm(pods: list[_Pod]) -> str:
    idle = Usage(gpu_used_mib=23_500, gpu_util=99.0)  # GPU 2: no pod of ours, nearly full
    gpus = [(p.gpu, p.name, p.usage) for p in pods] + [(len(pods), None, idle)]
    families = [
        ("DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB).", lambda u: u.gpu_used_mib),
        (
            "DCGM_FI_DEV_FB_FREE",
            "Framebuffer memory free (in MiB).",
            lambda u: u.gpu_total_mib - u.gpu_used_mib,
        ),
        ("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).", lambda u: u.gpu_util),
    ]
    lines = []
    for name, help_text, value in families:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
        lines += [f"{name}{_gpu_labels(gpu, pod)} {value(u):g}" for gpu, pod, u in gpus]
    return "\n".join(lines) + "\n"


def _container_labels(pod: _Pod, container: str, **extra: str) -> str:
    cid = hashlib.sha256(f"{pod.name}/{container}".encode()).hexdigest()[:16]
    labels = {
        "container": container,
        "id": f"/kubepods/burstable/pod-{pod.name}/{cid}"
        if container
        else f"/kubepods/pod-{pod.name}",
        "image": f"registry.example/tts:{pod.name[4:6]}" if container == CONTAINER else "",
        "name": cid if container else "",
        "namespace": NAMESPACE,
        "pod": pod.name,
    }
    return _labels(**extra, **labels)


def _cadvisor(pods: list[_Pod]) -> str:
    pause_bytes, pause_seconds = 700_000.0, 0.02
    lines = [
        "# HELP container_cpu_usage_seconds_total Cumulative cpu time consumed in seconds.",
        "# TYPE container_cpu_usage_seconds_total counter",
    ]
    for p in pods:
        for container, seconds in (
            (CONTAINER, p.cpu_seconds),
            ("POD", pause_seconds),
            ("", p.cpu_seconds + pause_seconds),
        ):
            labels = _container_labels(p, container, cpu="total")
            lines.append(f"container_cpu_usage_seconds_total{labels} {seconds:.6f}")
    lines += [
        "# HELP container_memory_working_set_bytes Current working set in bytes.",
        "# TYPE container_memory_working_set_bytes gauge",
    ]
    for p in pods:
        for container, used in (
            (CONTAINER, p.usage.memory_bytes),
            ("POD", pause_bytes),
            ("", p.usage.memory_bytes + pause_bytes),
        ):
            labels = _container_labels(p, container)
            lines.append(f"container_memory_working_set_bytes{labels} {used:.0f}")
    return "\n".join(lines) + "\n"
