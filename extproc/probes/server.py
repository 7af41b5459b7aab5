"""The probe process's HTTP face (loopback by default; no audio ever crosses it):

- ``GET /pairs?horizon=SECONDS`` -> the paired results younger than ``horizon`` (default
  300 s, at most one day) as JSON, the shape ``extproc.rollout.guards.quality`` reads;
- ``GET /metrics`` -> Prometheus text of :class:`~extproc.probes.metrics.ProbeMetrics`;
- ``GET /healthz`` -> ``ok``.

A ``ThreadingHTTPServer`` in a daemon thread: slow readers never stall the probe loop.
"""

from __future__ import annotations

import json
import math
import threading
import time
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from extproc.probes.metrics import ProbeMetrics
from extproc.probes.pairs import PairLog

DEFAULT_HORIZON = 300.0
MAX_HORIZON = 86_400.0


class ProbeHttpServer:
    def __init__(
        self,
        host: str,
        port: int,
        pairs: PairLog,
        metrics: ProbeMetrics,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        handler = _handler(pairs, metrics, monotonic)
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, name="probe-http", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _handler(
    pairs: PairLog, metrics: ProbeMetrics, monotonic: Callable[[], float]
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            if url.path == "/pairs":
                horizon = _horizon(urllib.parse.parse_qs(url.query).get("horizon", [""])[0])
                if horizon is None:
                    self._send(400, b"horizon: seconds in (0, 86400]\n", "text/plain")
                    return
                body = json.dumps(pairs.to_json(monotonic(), horizon)).encode()
                self._send(200, body, "application/json")
            elif url.path == "/metrics":
                self._send(200, generate_latest(metrics.registry), CONTENT_TYPE_LATEST)
            elif url.path == "/healthz":
                self._send(200, b"ok\n", "text/plain")
            else:
                self._send(404, b"not found\n", "text/plain")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the controller polls every second: no access log

    return Handler


def _horizon(text: str) -> float | None:
    if not text:
        return DEFAULT_HORIZON
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and 0 < value <= MAX_HORIZON else None
