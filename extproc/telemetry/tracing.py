"""One span per decision, exported over OTLP/gRPC, configured by the standard OTEL_* variables.

Tracing is on when an OTLP endpoint is configured (``OTEL_EXPORTER_OTLP_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) and neither ``OTEL_SDK_DISABLED=true`` nor
``OTEL_TRACES_EXPORTER=none`` says otherwise. Service name, resource attributes,
headers, sampler and batch sizes come from the SDK's own environment variables.
Off, a decision pays one attribute check and no allocation.

The span is a SERVER span named after the gRPC method, a child of Envoy's request
span: Envoy passes its trace context in the gRPC metadata of the stream
(``traceparent``); failing that the request's own ``traceparent`` header; else a
new root. Attribute names follow OpenTelemetry's feature-flag conventions.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

from extproc import __version__
from extproc.core.model import Decision
from extproc.telemetry.decision_spans import SPAN_NAME, DecisionSpans
from extproc.telemetry.otlp_spans import new_trace_id, resource_bytes, scope_bytes
from extproc.telemetry.span_export import SpanBatcher, bytes_exporter

log = logging.getLogger("extproc.telemetry.tracing")

BROKEN_INSTALL = (
    "the OpenTelemetry OTLP exporter cannot be imported ({error}). This is the known "
    "clash with xds-protos, whose stale copy of opentelemetry/proto/ overwrites the real "
    "opentelemetry-proto package (grpc/grpc#42926). Fix: "
    "pip install --no-deps --force-reinstall 'opentelemetry-proto==1.45.2' "
    "(scripts/setup does this)."
)


def tracing_configured(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the OTEL_* environment asks for trace export."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "none":
        return False
    return bool(
        environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    )


class BrokenInstallError(RuntimeError):
    """The OTLP exporter cannot be imported; the message says how to fix the install."""


class DecisionTracer:
    """Records one span per decision; a no-op when tracing is not configured.

    The hot path keeps a few plain values per sampled decision (decision_spans.SpanRecord);
    the export thread encodes them to OTLP bytes in batches (decision_spans.py) and sends
    them with the SDK's exporter (span_export.py). The SDK's sampler from
    ``OTEL_TRACES_SAMPLER`` decides, with a fast path for the default parent-based
    always-on.
    """

    def __init__(self, batcher: Any = None, sampler: Any = None) -> None:
        self._batcher = batcher
        self._sampler = sampler
        self._default_sampler = sampler is None or sampler.get_description().startswith(
            "ParentBased{root:AlwaysOnSampler"
        )
        self.enabled = batcher is not None

    @classmethod
    def from_env(cls) -> DecisionTracer:
        if not tracing_configured():
            return cls()
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # noqa: F401
                OTLPSpanExporter,
            )
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace.sampling import _get_from_env_or_default
        except ImportError as exc:
            raise BrokenInstallError(BROKEN_INSTALL.format(error=exc)) from exc
        resource = Resource.create({"service.name": "tts-canary-extproc"} | _service_from_env())
        exporter = bytes_exporter(
            resource_bytes(dict(resource.attributes)), scope_bytes("extproc", __version__)
        )
        log.info("tracing: exporting spans over OTLP/gRPC")
        return cls(SpanBatcher(exporter, DecisionSpans().encode), _get_from_env_or_default())

    def record(
        self,
        decision: Decision,
        flag_key: str,
        context_id: str | None,
        traceparent: str | None,
        start_ns: int,
        end_ns: int,
    ) -> None:
        """Queue the span of one decision, a child of ``traceparent`` when it is valid."""
        if self._batcher is None:
            return
        parent = parse_traceparent(traceparent)
        trace_id, parent_id = (parent[0], parent[1]) if parent else (new_trace_id(), b"")
        if not self._sampled(trace_id, parent):
            return
        self._batcher.add((decision, flag_key, context_id, trace_id, parent_id, start_ns, end_ns))

    def _sampled(self, trace_id: bytes, parent: tuple[bytes, bytes, bool] | None) -> bool:
        if self._default_sampler:
            return parent[2] if parent else True
        from opentelemetry import trace

        context = None
        if parent:
            flags = trace.TraceFlags(trace.TraceFlags.SAMPLED if parent[2] else 0)
            span_context = trace.SpanContext(
                int.from_bytes(parent[0]), int.from_bytes(parent[1]), True, flags
            )
            context = trace.set_span_in_context(trace.NonRecordingSpan(span_context))
        result = self._sampler.should_sample(context, int.from_bytes(trace_id), SPAN_NAME)
        return bool(result.decision.is_sampled())

    def shutdown(self, timeout: float = 2.0) -> None:
        """Export what is queued and stop, waiting at most ``timeout`` seconds.

        A slow or dead collector must not hold up a sidecar's exit: the export thread
        is a daemon that is abandoned after the deadline.
        """
        if self._batcher is not None and not self._batcher.shutdown(timeout):
            log.warning("tracing: spans still queued after %.1fs at shutdown, dropped", timeout)


Carrier = Sequence[tuple[str, str | bytes]] | Mapping[str, str]


def traceparent_of(carrier: Carrier) -> str | None:
    """The ``traceparent`` value of gRPC metadata pairs or a header mapping."""
    if isinstance(carrier, Mapping):
        value = carrier.get("traceparent")
        return value if isinstance(value, str) else None
    for key, item in carrier:
        if key == "traceparent":
            return item if isinstance(item, str) else None
    return None


def _parent(carrier: Carrier) -> tuple[bytes, bytes, bool] | None:
    return parse_traceparent(traceparent_of(carrier))


def parse_traceparent(value: str | None) -> tuple[bytes, bytes, bool] | None:
    """(trace id, span id, sampled) from a W3C traceparent, or None if absent or invalid."""
    parts = (value or "").strip().split("-")
    if len(parts) < 4 or len(parts[0]) != 2 or parts[0] == "ff":
        return None
    try:
        trace_id, span_id = bytes.fromhex(parts[1]), bytes.fromhex(parts[2])
        flags = int(parts[3][:2], 16)
    except ValueError:
        return None
    if len(trace_id) != 16 or len(span_id) != 8 or not any(trace_id) or not any(span_id):
        return None
    return trace_id, span_id, bool(flags & 1)


def _service_from_env() -> dict[str, str]:
    name = os.environ.get("OTEL_SERVICE_NAME")
    return {"service.name": name} if name else {}
