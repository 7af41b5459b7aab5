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
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from extproc.core.model import Decision

log = logging.getLogger("extproc.tracing")

SPAN_NAME = "envoy.service.ext_proc.v3.ExternalProcessor/Process"
# Span attributes, declared once.
FLAG_KEY = "feature_flag.key"
FLAG_VARIANT = "feature_flag.result.variant"
FLAG_REASON = "feature_flag.result.reason"
FLAG_VERSION = "feature_flag.version"
FLAG_CONTEXT_ID = "feature_flag.context.id"
FLAG_PROVIDER = "feature_flag.provider.name"
RULE = "tts_canary.rule"
BUCKET = "tts_canary.bucket"
KEY_HEADER = "tts_canary.key_header"
PROVIDER = "tts-canary-extproc"
_STATIC = {
    "rpc.system": "grpc",
    "rpc.service": "envoy.service.ext_proc.v3.ExternalProcessor",
    "rpc.method": "Process",
    FLAG_PROVIDER: PROVIDER,
}

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
    """Records one span per decision; a no-op when tracing is not configured."""

    def __init__(self, tracer: Any = None, provider: Any = None, flag_key: str = "") -> None:
        self._tracer = tracer
        self._provider = provider
        self.enabled = tracer is not None

    @classmethod
    def from_env(cls) -> DecisionTracer:
        if not tracing_configured():
            return cls()
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
        except ImportError as exc:
            raise BrokenInstallError(BROKEN_INSTALL.format(error=exc)) from exc
        resource = Resource.create({"service.name": "tts-canary-extproc"} | _service_from_env())
        # Shut down by us, with a deadline, not by an atexit hook that could hang.
        provider = TracerProvider(resource=resource, shutdown_on_exit=False)
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        log.info("tracing: exporting spans over OTLP/gRPC")
        return cls(provider.get_tracer("extproc"), provider)

    def record(
        self,
        decision: Decision,
        flag_key: str,
        context_id: str | None,
        carrier: Sequence[tuple[str, str | bytes]] | Mapping[str, str],
        start_ns: int,
        end_ns: int,
    ) -> None:
        """Export the span of one decision; ``carrier`` holds traceparent/tracestate."""
        tracer = self._tracer
        if tracer is None:
            return
        from opentelemetry.trace import SpanKind
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        parent = TraceContextTextMapPropagator().extract(_as_dict(carrier))
        attributes: dict[str, Any] = {
            **_STATIC,
            FLAG_KEY: flag_key,
            FLAG_VARIANT: decision.cohort.value,
            FLAG_REASON: decision.reason.value,
            FLAG_VERSION: decision.version,
            RULE: decision.rule,
        }
        if decision.bucket >= 0:
            attributes[BUCKET] = decision.bucket
        if context_id is not None:
            attributes[FLAG_CONTEXT_ID] = context_id
        if decision.key_source:
            attributes[KEY_HEADER] = decision.key_source
        span = tracer.start_span(
            SPAN_NAME,
            context=parent,
            kind=SpanKind.SERVER,
            attributes=attributes,
            start_time=start_ns,
        )
        span.end(end_time=end_ns)

    def shutdown(self, timeout: float = 2.0) -> None:
        """Flush what is queued and stop, waiting at most ``timeout`` seconds.

        A slow or dead collector must not hold up a sidecar's exit: the flush
        runs in a daemon thread that is abandoned after the deadline.
        """
        if self._provider is None:
            return
        flusher = threading.Thread(target=self._provider.shutdown, daemon=True)
        flusher.start()
        flusher.join(timeout)
        if flusher.is_alive():
            log.warning("tracing: spans still queued after %.1fs at shutdown, dropped", timeout)


def _as_dict(carrier: Sequence[tuple[str, str | bytes]] | Mapping[str, str]) -> dict[str, str]:
    if isinstance(carrier, Mapping):
        return dict(carrier)
    out: dict[str, str] = {}
    for key, value in carrier:
        if key in ("traceparent", "tracestate") and isinstance(value, str):
            out.setdefault(key, value)
    return out


def _service_from_env() -> dict[str, str]:
    name = os.environ.get("OTEL_SERVICE_NAME")
    return {"service.name": name} if name else {}
