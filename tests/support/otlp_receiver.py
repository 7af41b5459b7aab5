"""A real OTLP/gRPC trace receiver for tests, built on opentelemetry-proto's collector service.

``OtlpReceiver`` runs a sync gRPC server on a loopback port and keeps every span it
receives as a plain ``ReceivedSpan``. ``delay`` makes each Export call block
(counted in ``exports_in_flight``) and ``stop()`` takes it down, so tests can check
that a slow or dead receiver does not hold up decisions.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: int
    attributes: dict[str, Any] = field(default_factory=dict)


def _value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


class _Service(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, receiver: OtlpReceiver) -> None:
        self.receiver = receiver

    def Export(self, request: Any, context: Any) -> Any:
        if self.receiver.delay:
            with self.receiver.lock:
                self.receiver.exports_in_flight += 1
            self.receiver.release.wait(self.receiver.delay)  # stop() cuts the delay short
            with self.receiver.lock:
                self.receiver.exports_in_flight -= 1
        spans = []
        for rs in request.resource_spans:
            resource = {a.key: _value(a.value) for a in rs.resource.attributes}
            for ss in rs.scope_spans:
                for s in ss.spans:
                    spans.append(
                        ReceivedSpan(
                            service=str(resource.get("service.name", "")),
                            name=s.name,
                            trace_id=s.trace_id.hex(),
                            span_id=s.span_id.hex(),
                            parent_span_id=s.parent_span_id.hex(),
                            kind=s.kind,
                            attributes={a.key: _value(a.value) for a in s.attributes},
                        )
                    )
        with self.receiver.lock:
            self.receiver.spans.extend(spans)
            self.receiver.raw.append(request.SerializeToString())
        return trace_service_pb2.ExportTraceServiceResponse()


class OtlpReceiver:
    """An OTLP trace receiver on 127.0.0.1; use as a context manager."""

    def __init__(self, port: int = 0, delay: float = 0.0) -> None:
        self.delay = delay
        self.lock = threading.Lock()
        self.spans: list[ReceivedSpan] = []
        self.raw: list[bytes] = []
        self.exports_in_flight = 0
        self.release = threading.Event()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_Service(self), self._server)
        self.port = self._server.add_insecure_port(f"127.0.0.1:{port}")

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> OtlpReceiver:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self.release.set()
        self._server.stop(grace=0)

    def snapshot(self) -> list[ReceivedSpan]:
        with self.lock:
            return list(self.spans)

    def wait_for(
        self, predicate: Callable[[list[ReceivedSpan]], bool], what: str, timeout: float = 20.0
    ) -> list[ReceivedSpan]:
        """Poll until ``predicate(spans)`` holds; fail with ``what`` after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            spans = self.snapshot()
            if predicate(spans):
                return spans
            time.sleep(0.05)
        raise AssertionError(
            f"timed out after {timeout}s waiting for {what}; got {self.snapshot()}"
        )
