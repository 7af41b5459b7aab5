"""A minimal OTLP/gRPC trace collector for the load test: accepts Export, parses nothing.

    .venv/bin/python -m loadtest.otlp_sink --listen 127.0.0.1:4317

It answers every ``TraceService/Export`` call with an empty ExportTraceServiceResponse and
counts the calls and bytes it received (printed at exit), so that tracing cost is measured
against a collector that costs the system under test nothing beyond the real gRPC export.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from concurrent import futures

import grpc

EXPORT = "Export"
SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"


class Sink:
    """Counts Export calls and request bytes; thread-safe."""

    def __init__(self) -> None:
        self.calls = 0
        self.bytes = 0
        self._lock = threading.Lock()

    def export(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        with self._lock:
            self.calls += 1
            self.bytes += len(request)
        return b""  # an empty ExportTraceServiceResponse


def start(listen: str, sink: Sink) -> tuple[grpc.Server, int]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    handler = grpc.unary_unary_rpc_method_handler(sink.export)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE, {EXPORT: handler}),)
    )
    port = server.add_insecure_port(listen)
    server.start()
    return server, port


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtest.otlp_sink", description=__doc__)
    p.add_argument("--listen", default="127.0.0.1:4317", help="host:port (default %(default)s)")
    args = p.parse_args(argv)
    sink = Sink()
    server, port = start(args.listen, sink)
    print(f"otlp sink listening on port {port}", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.stop(1.0).wait()
    print(f"otlp sink: {sink.calls} export calls, {sink.bytes} bytes", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
