"""Where the local stack sends traces: one OTLP/gRPC endpoint for Envoy and the sidecar.

:class:`OtlpTarget` is the endpoint plus Envoy's sampling and flush settings; envoy_config
renders it into Envoy's tracing block, :func:`sidecar_otel_env` into the sidecar's standard
``OTEL_*`` variables, so both halves of a trace go to the same receiver at the same rate.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

OTLP_ENDPOINT_VARS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


@dataclass(frozen=True)
class OtlpTarget:
    """Where Envoy sends its spans: an OTLP/gRPC receiver (plaintext HTTP/2) at host:port.

    ``sampling_percent`` becomes the connection manager's ``random_sampling`` (0..100).
    ``flush_interval_ms``, when set, overrides Envoy's runtime key
    ``tracing.opentelemetry.flush_interval_ms`` (default 5000) and flushes every span at once
    (``min_flush_spans`` 1): for tests and demos that want spans without waiting.
    """

    host: str
    port: int
    sampling_percent: float = 100.0
    flush_interval_ms: int | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.sampling_percent <= 100.0:
            raise ValueError(f"sampling percent {self.sampling_percent} is not within 0..100")
        if not 0 < self.port < 65536:
            raise ValueError(f"OTLP port {self.port} is not within 1..65535")

    @classmethod
    def parse(cls, endpoint: str, **options: Any) -> OtlpTarget:
        """``host:port`` or ``http://host:port`` (the form of OTEL_EXPORTER_OTLP_ENDPOINT);
        ValueError for anything else (https included: the local stack speaks plaintext)."""
        text = endpoint.strip()
        parsed = urllib.parse.urlsplit(text if "://" in text else f"http://{text}")
        if parsed.scheme != "http" or parsed.path not in ("", "/") or not parsed.hostname:
            raise ValueError(f"OTLP endpoint {endpoint!r} is not host:port or http://host:port")
        try:
            port = parsed.port
        except ValueError:
            port = None
        if port is None:
            raise ValueError(f"OTLP endpoint {endpoint!r} has no valid port")
        return cls(parsed.hostname, port, **options)

    @property
    def url(self) -> str:
        """The endpoint as OTEL_EXPORTER_OTLP_ENDPOINT wants it."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


def sidecar_otel_env(env: Mapping[str, str], target: OtlpTarget | None) -> dict[str, str]:
    """``env`` with the sidecar's OTEL_* set for ``target``: its endpoint (replacing any other),
    plaintext, root spans sampled at Envoy's rate (children follow Envoy's sampled flag), the
    batch delay of Envoy's flush interval if set; other OTEL_* already in ``env`` are kept.
    With no target: ``env`` without any OTLP endpoint variable, so nothing exports."""
    out = {k: v for k, v in env.items() if target is not None or k not in OTLP_ENDPOINT_VARS}
    if target is None:
        return out
    out.pop("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", None)
    out["OTEL_EXPORTER_OTLP_ENDPOINT"] = target.url
    out.setdefault("OTEL_EXPORTER_OTLP_INSECURE", "true")
    out.setdefault("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
    out.setdefault("OTEL_TRACES_SAMPLER_ARG", str(target.sampling_percent / 100))
    if target.flush_interval_ms is not None:
        out.setdefault("OTEL_BSP_SCHEDULE_DELAY", str(target.flush_interval_ms))
    return out
