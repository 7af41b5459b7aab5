"""What ext_proc's per-request ``mode_override`` can do on the real Envoy 1.40 (the groundwork
for live sampling: docs/audio-gate.md; the built feature is tested through Envoy in
test_live_sampling_envoy.py).

The shipped Envoy config (``allow_mode_override: true``), speaking stand-ins, and a test
processor (grpc.aio, in this process) that routes like the naive baseline and, for users
named ``sample-*``, answers the request headers with a ``mode_override`` asking for the
request body, the response headers and the response body. Checked:

- an unsampled request still costs one message (request headers) and nothing else;
- a sampled request delivers the request text and the whole WAV body to the processor, and the
  client gets the same bytes;
- an override that turns on the response body alone (response headers left at SKIP) also
  delivers it;
- BUFFERED over Envoy's buffer limit fails the sampled request, BUFFERED_PARTIAL does not (so
  live sampling must not use BUFFERED for audio);
- the added latency of a sampled request (median of paired rounds) is printed.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import threading
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
import xxhash
from envoy.config.core.v3 import base_pb2
from envoy.extensions.filters.http.ext_proc.v3 import processing_mode_pb2 as mode_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as ext_proc_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as ext_proc_grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from extproc.stack import client, envoy_config
from extproc.stack.envoy_config import EnvoyPorts
from extproc.stack.processes import (
    ManagedProcess,
    free_port,
    wait_for_http,
    wait_for_port,
    wait_until,
)
from extproc.stack.stack import REPO_ROOT, find_envoy
from extproc.standins.speech import espeak_available

pytestmark = [pytest.mark.envoy, pytest.mark.skipif(not espeak_available(), reason="espeak-ng")]

SERVICE = "envoy.service.ext_proc.v3.ExternalProcessor"
HOST = "127.0.0.1"
Mode = mode_pb2.ProcessingMode
OVERRIDES = {
    # user prefix -> the override sent with the request-headers answer
    "sample-": Mode(
        request_body_mode=Mode.BUFFERED,
        response_header_mode=Mode.SEND,
        response_body_mode=Mode.BUFFERED,
    ),
    "bodyonly-": Mode(response_body_mode=Mode.BUFFERED),
    "partial-": Mode(response_header_mode=Mode.SEND, response_body_mode=Mode.BUFFERED_PARTIAL),
}


@dataclass
class Seen:
    """What the processor received on one stream, keyed by the user id."""

    phases: list[str] = field(default_factory=list)
    body_bytes: dict[str, int] = field(default_factory=lambda: defaultdict(int))


class SamplingProcessor(ext_proc_grpc.ExternalProcessorServicer):
    def __init__(self) -> None:
        self.seen: dict[str, Seen] = {}

    async def Process(
        self,
        request_iterator: AsyncIterator[ext_proc_pb2.ProcessingRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[ext_proc_pb2.ProcessingResponse]:
        seen = Seen()
        async for request in request_iterator:
            phase = request.WhichOneof("request")
            seen.phases.append(phase)
            if phase == "request_headers":
                user = _header(request.request_headers, "x-user-id")
                self.seen[user] = seen
                yield _routed(user)
                continue
            if phase in ("request_body", "response_body"):
                seen.body_bytes[phase] += len(getattr(request, phase).body)
            response = ext_proc_pb2.ProcessingResponse()
            getattr(response, phase).SetInParent()
            yield response


def _header(headers: ext_proc_pb2.HttpHeaders, name: str) -> str:
    for header in headers.headers.headers:
        if header.key == name:
            return (header.raw_value or header.value.encode()).decode()
    return ""


def _routed(user: str) -> ext_proc_pb2.ProcessingResponse:
    cohort = b"v2" if xxhash.xxh64_intdigest(user.encode()) % 2 else b"v1"
    mutation = ext_proc_pb2.HeaderMutation(
        set_headers=[
            base_pb2.HeaderValueOption(
                header=base_pb2.HeaderValue(key="x-tts-cohort", raw_value=cohort)
            )
        ]
    )
    response = ext_proc_pb2.ProcessingResponse(
        request_headers=ext_proc_pb2.HeadersResponse(
            response=ext_proc_pb2.CommonResponse(header_mutation=mutation, clear_route_cache=True)
        )
    )
    for prefix, mode in OVERRIDES.items():
        if user.startswith(prefix):
            response.mode_override.CopyFrom(mode)
    return response


class ProcessorThread:
    """The test processor on its own event loop in a daemon thread."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.servicer = SamplingProcessor()
        self._loop = asyncio.new_event_loop()
        self._server: grpc.aio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> ProcessorThread:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    async def _start(self) -> None:
        server = grpc.aio.server()
        ext_proc_grpc.add_ExternalProcessorServicer_to_server(self.servicer, server)
        checker = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(checker, server)
        server.add_insecure_port(f"{HOST}:{self.port}")
        await server.start()
        for service in ("", SERVICE):
            await checker.set(service, health_pb2.HealthCheckResponse.SERVING)
        self._server = server

    def __exit__(self, *exc: Any) -> None:
        if self._server is not None:
            asyncio.run_coroutine_threadsafe(self._server.stop(0), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


@dataclass(frozen=True)
class Gateway:
    listener: tuple[str, int]
    processor: SamplingProcessor

    @property
    def listener_address(self) -> tuple[str, int]:
        return self.listener


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    run_dir = tmp_path_factory.mktemp("mode-override")
    listener, admin, sidecar, tts_v1, tts_v2 = (free_port() for _ in range(5))
    ports = EnvoyPorts(listener, admin, sidecar, tts_v1, tts_v2)
    config = envoy_config.render_config(ports)
    for http_filter in envoy_config.connection_manager(config)["http_filters"]:
        if http_filter["name"] == "envoy.filters.http.ext_proc":
            http_filter["typed_config"]["allow_mode_override"] = True
    config_path = envoy_config.write_config(config, run_dir)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = str(REPO_ROOT)
    standins = [
        ManagedProcess(
            f"tts_{version}",
            [
                sys.executable,
                "-m",
                "extproc.standins.server",
                "--version",
                version,
                "--host",
                HOST,
                "--port",
                str(port),
            ],
            run_dir / f"tts_{version}.log",
            env=env,
            cwd=REPO_ROOT,
        )
        for version, port in (("v1", tts_v1), ("v2", tts_v2))
    ]
    envoy_argv = [find_envoy(), "-c", str(config_path), "--disable-hot-restart"]
    envoy_argv += ["--concurrency", "1", "--log-level", "warn"]
    envoy = ManagedProcess("envoy", envoy_argv, run_dir / "envoy.log", env=env, cwd=REPO_ROOT)
    with ProcessorThread(sidecar) as processor:
        try:
            for standin, port in zip(standins, (tts_v1, tts_v2), strict=True):
                standin.start()
                wait_for_http(f"http://{HOST}:{port}/healthz", 30, standin)
            envoy.start()
            wait_for_http(f"http://{HOST}:{admin}/ready", 30, envoy)
            wait_for_port(HOST, listener, 30, envoy)
            yield Gateway((HOST, listener), processor.servicer)
        finally:
            for process in (envoy, *standins):
                process.stop()
            client.close_connections()


TEXT = b'{"text": "The old lighthouse keeper climbed the narrow stairs every evening."}'


def send(gateway: Gateway, user: str, text: bytes = TEXT) -> tuple[client.Reply, float, bytes]:
    """One request; the reply, its wall time (seconds) and the body."""
    began = time.perf_counter()
    reply, body = client.request(gateway.listener, {"x-user-id": user}, body=text, timeout=60)
    return reply, time.perf_counter() - began, body


def test_an_unsampled_request_costs_one_message(gateway: Gateway) -> None:
    reply, _, _ = send(gateway, "plain-1")
    assert reply.status == 200
    wait_until(lambda: "plain-1" in gateway.processor.seen, "the processor to see it", 5)
    assert gateway.processor.seen["plain-1"].phases == ["request_headers"]


def test_a_sampled_request_delivers_the_text_and_the_whole_audio(gateway: Gateway) -> None:
    reply, _, body = send(gateway, "sample-1")
    assert reply.status == 200 and body.startswith(b"RIFF")
    seen = gateway.processor.seen["sample-1"]
    assert seen.phases[:2] == ["request_headers", "request_body"]
    assert "response_headers" in seen.phases and "response_body" in seen.phases
    assert seen.body_bytes["request_body"] == len(TEXT)
    assert seen.body_bytes["response_body"] == len(body)


def test_the_override_can_turn_on_the_response_body_alone(gateway: Gateway) -> None:
    reply, _, body = send(gateway, "bodyonly-1")
    seen = gateway.processor.seen["bodyonly-1"]
    print(f"\nresponse body only override: phases {seen.phases}, status {reply.status}")
    assert reply.status == 200
    assert seen.phases == ["request_headers", "response_body"]
    assert seen.body_bytes["response_body"] == len(body)


def test_buffered_over_the_buffer_limit_fails_partial_does_not(gateway: Gateway) -> None:
    long_text = ("The old lighthouse keeper climbed the narrow stairs every evening. " * 40)[:2600]
    big = b'{"text": "' + long_text.encode() + b'"}'
    plain, _, audio = send(gateway, "plain-big", big)
    assert plain.status == 200 and len(audio) > 1 << 20  # more than Envoy's 1 MiB buffer
    buffered, _, _ = send(gateway, "sample-big", big)
    partial, _, partial_audio = send(gateway, "partial-big", big)
    print(
        f"\n{len(audio)} bytes of audio: BUFFERED sampled -> {buffered.status}, "
        f"BUFFERED_PARTIAL sampled -> {partial.status} "
        f"(processor got {gateway.processor.seen['partial-big'].body_bytes['response_body']} B)"
    )
    assert buffered.status >= 500
    assert partial.status == 200 and partial_audio == audio


def test_added_latency_of_a_sampled_request(gateway: Gateway) -> None:
    """Printed, not asserted (no timing assertions): paired rounds, unsampled then sampled."""
    send(gateway, "plain-warm")
    send(gateway, "sample-warm")
    plain, sampled, sizes = [], [], []
    for n in range(40):
        for user, times in ((f"plain-lat-{n}", plain), (f"sample-lat-{n}", sampled)):
            reply, seconds, body = send(gateway, user)
            assert reply.status == 200 and body.startswith(b"RIFF")
            times.append(seconds)
            seen = gateway.processor.seen[user]
            if user.startswith("sample-"):  # the body phases really ran, with all the audio
                assert seen.body_bytes["response_body"] == len(body), user
                sizes.append(len(body))
            else:
                assert seen.phases == ["request_headers"], user
    size = int(statistics.median(sizes))
    added = [s - p for s, p in zip(sampled, plain, strict=True)]
    print(
        f"\nsampled request (request body + response headers + body to the processor, "
        f"BUFFERED, {size // 1024} KiB WAV): median {statistics.median(plain) * 1000:.2f} ms "
        f"unsampled, {statistics.median(sampled) * 1000:.2f} ms sampled, median paired "
        f"difference {statistics.median(added) * 1000:+.2f} ms over {len(added)} pairs "
        "(shared machine)"
    )
