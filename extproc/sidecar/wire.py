"""The only place that speaks Envoy's ext_proc protobuf.

Incoming ``ProcessingRequest`` -> plain header dict; ``Decision`` -> serialized
``ProcessingResponse``. Everything past this module sees plain data.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from envoy.config.core.v3 import base_pb2
from envoy.extensions.filters.http.ext_proc.v3 import processing_mode_pb2 as mode_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as ext_proc
from google.protobuf.message import DecodeError

from extproc.core.model import Decision

#: Request header that carries the cohort to Envoy's router.
COHORT_HEADER = "x-tts-cohort"
#: Dynamic metadata namespace (see envoy/envoy.yaml and docs/observability.md).
METADATA_NAMESPACE = "tts_canary"

ProcessingRequest = ext_proc.ProcessingRequest
_OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD


def read_headers(headers: Iterable[Any], wanted: frozenset[str]) -> dict[str, str]:
    """The first value of each ``wanted`` header (names lower-case).

    Envoy sends the value in ``raw_value`` (bytes); older configs use ``value``.
    Bytes that are not UTF-8 survive as surrogate escapes, so the key hashes to
    the exact bytes the client sent. Repeated headers: the first one wins.
    """
    out: dict[str, str] = {}
    for header in headers:
        name = header.key
        if name not in wanted or name in out:
            continue
        raw = header.raw_value
        out[name] = raw.decode("utf-8", "surrogateescape") if raw else header.value
    return out


def decision_response(decision: Decision) -> bytes:
    """Serialized response to a request-headers message: set the cohort header,
    clear the route cache (in the same response, or Envoy keeps the old route)
    and publish the decision as dynamic metadata."""
    response = ext_proc.ProcessingResponse()
    common = response.request_headers.response
    option = common.header_mutation.set_headers.add()
    option.header.key = COHORT_HEADER
    option.header.raw_value = decision.cohort.value.encode()
    option.append_action = _OVERWRITE
    common.clear_route_cache = True
    fields = response.dynamic_metadata.fields[METADATA_NAMESPACE].struct_value.fields
    fields["cohort"].string_value = decision.cohort.value
    fields["reason"].string_value = decision.reason.value
    fields["rule"].string_value = decision.rule
    fields["bucket"].number_value = decision.bucket
    fields["version"].string_value = decision.version
    return response.SerializeToString()


#: Live sampling: the processing mode a sampled request switches to (request text and response
#: audio, BUFFERED_PARTIAL: BUFFERED fails answers over Envoy's buffer limit with a 500).
_SAMPLED_MODE = mode_pb2.ProcessingMode(
    request_body_mode=mode_pb2.ProcessingMode.BUFFERED_PARTIAL,
    response_body_mode=mode_pb2.ProcessingMode.BUFFERED_PARTIAL,
)
#: Metadata key of a sampled request's token (Envoy forwards the namespace with its bodies).
SAMPLE_KEY = "sample"


def sampled_response(decision: Decision, token: str) -> bytes:
    """The decision answer plus a ``mode_override`` asking for both bodies, and the sample's
    ``token`` in the dynamic metadata (Envoy sends the namespace back with each body message:
    ``metadata_options.forwarding_namespaces``), which ties the two bodies together."""
    response = ext_proc.ProcessingResponse.FromString(decision_response(decision))
    fields = response.dynamic_metadata.fields[METADATA_NAMESPACE].struct_value.fields
    fields[SAMPLE_KEY].string_value = token
    response.mode_override.CopyFrom(_SAMPLED_MODE)
    return response.SerializeToString()


def sample_of(request: ext_proc.ProcessingRequest) -> tuple[str, str] | None:
    """(token, cohort) of a sampled request's message, from its forwarded metadata; None if
    the message carries no sample token."""
    namespaces = request.metadata_context.filter_metadata
    if METADATA_NAMESPACE not in namespaces:
        return None
    fields = namespaces[METADATA_NAMESPACE].fields
    if SAMPLE_KEY not in fields:
        return None
    cohort = fields["cohort"].string_value if "cohort" in fields else ""
    return fields[SAMPLE_KEY].string_value, cohort


def _continue(phase: str) -> bytes:
    response = ext_proc.ProcessingResponse()
    getattr(response, phase).SetInParent()
    return response.SerializeToString()


#: Phases we never ask for but answer harmlessly if a config enables them.
_PASS_THROUGH = {
    phase: _continue(phase)
    for phase in (
        "request_headers",
        "response_headers",
        "request_body",
        "response_body",
        "request_trailers",
        "response_trailers",
    )
}


def pass_through(request: ext_proc.ProcessingRequest) -> bytes | None:
    """A 'continue unchanged' answer for any phase; None for messages needing no answer."""
    phase = request.WhichOneof("request")
    return _PASS_THROUGH.get(phase) if phase else None


class BadMessage(ValueError):
    """Bytes on the stream that are not a ProcessingRequest."""


def parse_request(data: bytes) -> ext_proc.ProcessingRequest:
    """Parse one stream message; raises ``BadMessage`` for bytes that are not one."""
    try:
        return ext_proc.ProcessingRequest.FromString(data)
    except DecodeError as exc:
        raise BadMessage(str(exc)) from None
