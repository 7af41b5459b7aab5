"""The standard gRPC health service (grpc.health.v1.Health/Check) for both server models.

SERVING for "" and for the ext_proc service only after the first good rules
load; NOT_SERVING again from the start of a graceful shutdown. Watch is not
offered (Envoy's health checker and Kubernetes' gRPC probes use Check).
"""

from __future__ import annotations

from grpc_health.v1 import health_pb2

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
CHECK_PATH = "/grpc.health.v1.Health/Check"
_ANSWERS = {
    status: health_pb2.HealthCheckResponse(status=status).SerializeToString()
    for status in (SERVING, NOT_SERVING)
}


class UnknownService(LookupError):
    """Check was asked about a service this server does not have (gRPC NOT_FOUND)."""


class HealthState:
    """Serving status per service name; the answer bytes are pre-built."""

    def __init__(self, services: tuple[str, ...]) -> None:
        self._status = dict.fromkeys(services, NOT_SERVING)

    def set_all(self, serving: bool) -> None:
        for service in self._status:
            self._status[service] = SERVING if serving else NOT_SERVING

    def status(self, service: str) -> int:
        if service not in self._status:
            raise UnknownService(service)
        return self._status[service]

    def check(self, request: bytes) -> bytes:
        """Answer a serialized HealthCheckRequest; raises UnknownService."""
        service = health_pb2.HealthCheckRequest.FromString(request).service
        return _ANSWERS[self.status(service)]
