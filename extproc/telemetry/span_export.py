"""Batching, encoding and export of decision spans (see decision_spans.py, otlp_spans.py).

A bounded queue filled by the event loop (one deque append of a record per span) and
drained by one daemon thread every ``OTEL_BSP_SCHEDULE_DELAY`` ms or as soon as
``OTEL_BSP_MAX_EXPORT_BATCH_SIZE`` spans wait; over ``OTEL_BSP_MAX_QUEUE_SIZE`` the oldest
spans are dropped, as the SDK's batch processor does. The thread encodes a batch of
records to span bytes (``encode``) in chunks, letting the event loop take the GIL between
chunks, and the SDK's OTLP/gRPC exporter sends the batch, so endpoint, headers, TLS,
compression, timeout and retries are configured as usual by ``OTEL_EXPORTER_OTLP_*``.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from extproc.telemetry.otlp_spans import export_request

log = logging.getLogger("extproc.telemetry.tracing")

#: Records encoded between two chances for the event loop to take the GIL (~0.1 ms).
ENCODE_CHUNK = 64


def _env_int(name: str, default: int) -> int:
    try:
        value = int(os.environ.get(name, default))
    except ValueError:
        return default
    return value if value > 0 else default


class _RawTraceStub:
    """TraceService/Export sending already-serialized request bytes (no re-encoding)."""

    def __init__(self, channel: Any) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceResponse,
        )

        self.Export = channel.unary_unary(
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            request_serializer=None,
            response_deserializer=ExportTraceServiceResponse.FromString,
        )


def bytes_exporter(resource: bytes, scope: bytes) -> Any:
    """The SDK's OTLP/gRPC span exporter (its env config, channel, retries), sending
    finished span bytes: ``_translate_data`` builds the request bytes directly and the
    stub sends them as they are."""
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    class BytesSpanExporter(OTLPSpanExporter):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self._stub = _RawTraceStub  # also used when the exporter reconnects
            if getattr(self, "_channel", None) is not None:
                self._client = _RawTraceStub(self._channel)  # type: ignore[assignment]

        def _translate_data(self, data: Sequence[bytes]) -> bytes:  # type: ignore[override]
            return export_request(resource, scope, data)

    return BytesSpanExporter()


def _as_is(records: Sequence[Any]) -> list[bytes]:
    return list(records)


class SpanBatcher:
    """Queue of span records and the thread that encodes and exports them in batches.

    ``encode``: records -> span bytes, in order (default: the records are span bytes).
    """

    def __init__(
        self, exporter: Any, encode: Callable[[Sequence[Any]], list[bytes]] = _as_is
    ) -> None:
        self._exporter = exporter
        self._encode = encode
        self._delay = _env_int("OTEL_BSP_SCHEDULE_DELAY", 5000) / 1000
        self._batch = _env_int("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512)
        self._queue: collections.deque[Any] = collections.deque(
            maxlen=_env_int("OTEL_BSP_MAX_QUEUE_SIZE", 2048)
        )
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="span-export", daemon=True)
        self._thread.start()

    def add(self, record: Any) -> None:
        self._queue.append(record)
        if len(self._queue) >= self._batch and not self._wake.is_set():
            self._wake.set()

    def _run(self) -> None:
        while not self._stopping:
            self._wake.wait(self._delay)
            self._wake.clear()
            self._drain()
        self._drain()  # what was queued before shutdown

    def _drain(self) -> None:
        queue = self._queue
        while queue:
            records = [queue.popleft() for _ in range(min(self._batch, len(queue)))]
            try:
                spans: list[bytes] = []
                for at in range(0, len(records), ENCODE_CHUNK):
                    spans += self._encode(records[at : at + ENCODE_CHUNK])
                    time.sleep(0)  # releases the GIL: the event loop may take it now
                self._exporter.export(spans)
            except Exception:  # an export failure must never stop the thread
                log.exception("tracing: export failed; %d spans dropped", len(records))

    def shutdown(self, timeout: float) -> bool:
        """Export what is queued within ``timeout`` s; True if the thread finished."""
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            return False  # a slow collector: abandon the daemon thread, never block exit
        self._exporter.shutdown()
        return True
