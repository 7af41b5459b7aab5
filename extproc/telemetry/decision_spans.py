"""Decision spans recorded as plain values on the hot path, encoded in batches off it.

``DecisionTracer.record`` (tracing.py) queues one ``SpanRecord`` per sampled decision: a
tuple of values it already holds (the Decision, the flag key, the hashed context id, the
trace and parent ids, two timestamps), no bytes built and no SDK object. The export
thread turns a batch of records into OTLP span bytes with ``DecisionSpans.encode``, the
same bytes the per-decision encoder produced (a property test holds them equal).

The attributes a decision determines, except the bucket, repeat (flag key x cohort x
reason x version x rule x key header): they are encoded once per combination. The
bucket's attribute comes from the encoder's per-value cache (at most BUCKETS values).
"""

from __future__ import annotations

from collections.abc import Iterable

from extproc.core.model import Decision
from extproc.telemetry.otlp_spans import SpanEncoder
from extproc.telemetry.privacy import HASH_DIGITS

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
STATIC = {
    "rpc.system": "grpc",
    "rpc.service": "envoy.service.ext_proc.v3.ExternalProcessor",
    "rpc.method": "Process",
    FLAG_PROVIDER: PROVIDER,
}
_KIND_SERVER = 2  # OTLP Span.SpanKind SPAN_KIND_SERVER

#: (decision, flag key, context id or None, trace id, parent span id or b"", start, end)
SpanRecord = tuple[Decision, str, str | None, bytes, bytes, int, int]

_MEMO_LIMIT = 4096


class DecisionSpans:
    """Encodes decision spans: SERVER spans named after the gRPC method."""

    def __init__(self) -> None:
        self._encoder = SpanEncoder(SPAN_NAME, _KIND_SERVER, STATIC)
        self._context_id_prefix = self._encoder.string_prefix(FLAG_CONTEXT_ID, HASH_DIGITS)
        self._memo: dict[tuple[object, ...], tuple[bytes, bytes]] = {}

    def encode(self, records: Iterable[SpanRecord]) -> list[bytes]:
        """One ScopeSpans.spans entry per record, in order."""
        span = self._encoder.span
        bucket_attribute = self._encoder.attribute
        prefix = self._context_id_prefix
        memo = self._memo
        out = []
        for decision, flag_key, context_id, trace_id, parent_id, start_ns, end_ns in records:
            # Plain values: hashing the Decision would run Enum.__hash__ (Python) twice.
            key = (
                decision.cohort._value_,
                decision.reason._value_,
                decision.rule,
                decision.version,
                decision.key_source,
                flag_key,
            )
            parts = memo.get(key)
            if parts is None:
                parts = self._encode_decision(decision, flag_key)
                if len(memo) >= _MEMO_LIMIT:
                    memo.clear()
                memo[key] = parts
            head, tail = parts
            bucket = bucket_attribute(BUCKET, decision.bucket) if decision.bucket >= 0 else b""
            if context_id is None:
                attributes: tuple[bytes, ...] = (head, bucket, tail)
            else:  # always the hasher's fixed number of hex digits (privacy.IdHasher)
                attributes = (head, bucket, tail, prefix, context_id.encode())
            out.append(span(trace_id, parent_id, start_ns, end_ns, attributes))
        return out

    def _encode_decision(self, decision: Decision, flag_key: str) -> tuple[bytes, bytes]:
        """The attributes before and after the bucket's, for one combination."""
        enc = self._encoder.attribute
        head = b"".join(
            (
                enc(FLAG_KEY, flag_key),
                enc(FLAG_VARIANT, decision.cohort.value),
                enc(FLAG_REASON, decision.reason.value),
                enc(FLAG_VERSION, decision.version),
                enc(RULE, decision.rule),
            )
        )
        tail = enc(KEY_HEADER, decision.key_source) if decision.key_source else b""
        return head, tail
