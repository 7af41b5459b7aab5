"""The naive baseline: what anyone would write first as an ext_proc cohort processor.

A plain grpc.aio servicer: hash the x-user-id header with 64-bit xxHash, v2 iff
``hash % 10_000 < share * 100``, set ``x-tts-cohort`` (raw_value) and clear the route cache.
No rules, no salt, no telemetry, no dynamic metadata. The load test measures the real sidecar
against it; the Envoy-facts tests use it to prove the Envoy config independently of the sidecar.

It also serves grpc.health.v1 (SERVING for "" and for the ext_proc service) so that Envoy's
health check on the sidecar cluster passes.

    python loadtest/naive_processor.py --listen 127.0.0.1:50051 --share 10
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import AsyncIterator

import grpc
import xxhash
from envoy.config.core.v3 import base_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as ext_proc_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as ext_proc_grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

SERVICE_NAME = "envoy.service.ext_proc.v3.ExternalProcessor"
BUCKETS = 10_000


class NaiveProcessor(ext_proc_grpc.ExternalProcessorServicer):
    """Answers every request-headers message with a cohort header; anything else, empty."""

    def __init__(self, share_percent: float) -> None:
        self._v2_below = round(share_percent * BUCKETS / 100)

    def _cohort(self, headers: ext_proc_pb2.HttpHeaders) -> bytes:
        for header in headers.headers.headers:
            if header.key == "x-user-id":
                user = header.raw_value or header.value.encode()
                bucket = xxhash.xxh64_intdigest(user) % BUCKETS
                return b"v2" if bucket < self._v2_below else b"v1"
        return b"v1"

    async def Process(
        self,
        request_iterator: AsyncIterator[ext_proc_pb2.ProcessingRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[ext_proc_pb2.ProcessingResponse]:
        async for request in request_iterator:
            phase = request.WhichOneof("request")
            if phase != "request_headers":
                response = ext_proc_pb2.ProcessingResponse()
                if phase:  # the response oneof uses the same field names as the request's
                    getattr(response, phase).SetInParent()
                yield response
                continue
            cohort = self._cohort(request.request_headers)
            mutation = ext_proc_pb2.HeaderMutation(
                set_headers=[
                    base_pb2.HeaderValueOption(
                        header=base_pb2.HeaderValue(key="x-tts-cohort", raw_value=cohort)
                    )
                ]
            )
            yield ext_proc_pb2.ProcessingResponse(
                request_headers=ext_proc_pb2.HeadersResponse(
                    response=ext_proc_pb2.CommonResponse(
                        header_mutation=mutation, clear_route_cache=True
                    )
                )
            )


async def serve(listen: str, share_percent: float) -> None:
    """Serve until SIGTERM or SIGINT, then stop with a one-second grace."""
    server = grpc.aio.server()
    ext_proc_grpc.add_ExternalProcessorServicer_to_server(NaiveProcessor(share_percent), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if server.add_insecure_port(listen) == 0:
        raise SystemExit(f"naive_processor: cannot listen on {listen}")
    await server.start()
    for service in ("", SERVICE_NAME):
        await health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(f"naive_processor: listening on {listen}, v2 share {share_percent}%", flush=True)
    await stop.wait()
    await server.stop(grace=1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--listen", default="127.0.0.1:50051", help="host:port (default %(default)s)"
    )
    parser.add_argument("--share", type=float, default=10.0, help="v2 share in %% (default 10)")
    args = parser.parse_args()
    asyncio.run(serve(args.listen, args.share))


if __name__ == "__main__":
    main()
