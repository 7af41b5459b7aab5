"""Harness for the in-process sidecar layer (helpers; fixtures live in conftest.py).

``Sidecar`` runs the real server (``run_server``) on its own asyncio loop in a
background thread, so the tests stay synchronous and talk to it over a real
gRPC channel with the generated Envoy stubs. Nothing here sleeps for a fixed
time: ``wait_for`` polls a condition with a deadline.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from envoy.service.ext_proc.v3 import external_processor_pb2 as ext_proc
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as ext_proc_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from extproc.core.model import Decision
from extproc.settings import ServeSettings
from extproc.sidecar.server import EXT_PROC_SERVICE, Running, run_server

# Spelled out, not imported from wire.py: Envoy's routes and access log depend on them.
COHORT_HEADER = "x-tts-cohort"
NAMESPACE = "tts_canary"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING

#: Rules used by this layer. ``when_missing: v2`` on purpose: a missing key must
#: follow the policy, which a hard-wired v1 fallback would not.
RULES_TEMPLATE = """\
rollout:
  name: sidecar-test
  salt: sidecar-test-salt
  share: {share}
identity:
  user_header: x-user-id
  fallback_headers: [x-device-id]
  when_missing: v2
attributes: {{region: x-region, device: x-device-model}}
force:
  v2: [qa-001]
  v1: [vip-42]
rules:
  - name: eu-hold
    when: {{region: [eu-west, eu-central]}}
    cohort: v1
  - name: ios-first
    when: {{device: "ios-*"}}
    share: 20%
  - name: beta-header
    when: {{headers: {{x-beta: "on"}}}}
    cohort: v2
"""


def rules_text(share: str = "10%") -> str:
    return RULES_TEMPLATE.format(share=share)


def wait_for(condition: Callable[[], object], what: str, timeout: float = 10.0) -> None:
    """Poll ``condition`` until it is truthy; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


def headers_request(
    pairs: list[tuple[str, bytes]], field: str = "raw_value"
) -> ext_proc.ProcessingRequest:
    """A request-headers message; ``field='value'`` sends the text field instead of bytes."""
    request = ext_proc.ProcessingRequest()
    request.request_headers.headers.SetInParent()  # present even with no header at all
    headers = request.request_headers.headers.headers
    for name, value in pairs:
        header = headers.add()
        header.key = name
        if field == "raw_value":
            header.raw_value = value
        else:
            header.value = value.decode()
    return request


def user_request(user: str) -> ext_proc.ProcessingRequest:
    return headers_request([("x-user-id", user.encode())])


def cohort_of(response: ext_proc.ProcessingResponse) -> str:
    """The cohort header the sidecar sets (raw_value; ``value`` must stay empty)."""
    (option,) = response.request_headers.response.header_mutation.set_headers
    assert option.header.key == COHORT_HEADER
    assert option.header.value == ""
    return option.header.raw_value.decode()


def metadata_of(response: ext_proc.ProcessingResponse) -> dict[str, object]:
    fields = response.dynamic_metadata.fields[NAMESPACE].struct_value.fields
    out: dict[str, object] = {k: v.string_value for k, v in fields.items() if k != "bucket"}
    out["bucket"] = fields["bucket"].number_value
    return out


def expected_metadata(decision: Decision) -> dict[str, object]:
    return {
        "cohort": decision.cohort.value,
        "reason": decision.reason.value,
        "rule": decision.rule,
        "bucket": float(decision.bucket),
        "version": decision.version,
    }


class OpenStream:
    """One Process stream driven message by message (for cancel / drain tests)."""

    def __init__(self, stub: ext_proc_grpc.ExternalProcessorStub, timeout: float = 20) -> None:
        self._outbox: queue.Queue[ext_proc.ProcessingRequest | None] = queue.Queue()
        self.call = stub.Process(iter(self._outbox.get, None), timeout=timeout)

    def exchange(self, request: ext_proc.ProcessingRequest) -> ext_proc.ProcessingResponse:
        self._outbox.put(request)
        return next(self.call)

    def send(self, request: ext_proc.ProcessingRequest) -> None:
        self._outbox.put(request)

    def close(self) -> None:
        """Half-close: the server sees the end of the request stream."""
        self._outbox.put(None)

    def cancel(self) -> None:
        """What Envoy does at the end of every HTTP request: reset the stream."""
        self.call.cancel()
        self.close()  # releases gRPC's request-sending thread


class Sidecar:
    """The real sidecar on its own event loop thread, plus a client channel to it."""

    def __init__(
        self,
        rules: Path,
        poll_seconds: float = 0.02,
        grace_seconds: float = 2,
        server: str = "h2",
        **more: Any,
    ) -> None:
        """``more``: further ServeSettings fields (e.g. live sampling's)."""
        self.settings = ServeSettings(
            server=server,
            rules=str(rules),
            listen="127.0.0.1:0",
            metrics="127.0.0.1:0",  # metrics off would not count decisions
            grace_seconds=grace_seconds,
            poll_seconds=poll_seconds,
            loop="asyncio",
            log_level="info",
            **more,
        )
        self.running: Running | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=asyncio.run, args=(self._serve(),), daemon=True)
        self._thread.start()
        if not self._ready.wait(10) or self.running is None:
            raise RuntimeError("sidecar did not start") from self._failure
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.running.port}")
        self.stub = ext_proc_grpc.ExternalProcessorStub(self.channel)
        self.health_stub = health_pb2_grpc.HealthStub(self.channel)

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            async with run_server(self.settings) as running:
                self.running = running
                self._ready.set()
                await self._stop.wait()
        except BaseException as exc:
            self._failure = exc
            raise
        finally:
            self._ready.set()

    def stop(self) -> None:
        """Drain and stop the server (every handler has finished when this returns)."""
        self.channel.close()
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(15)
        assert not self._thread.is_alive(), "sidecar thread did not stop"

    # -- client helpers ---------------------------------------------------------

    def process(self, *requests: ext_proc.ProcessingRequest) -> list[ext_proc.ProcessingResponse]:
        """Send ``requests`` on one stream, half-close, return every response."""
        return list(self.stub.Process(iter(requests), timeout=20))

    def decide(self, request: ext_proc.ProcessingRequest) -> ext_proc.ProcessingResponse:
        (response,) = self.process(request)
        return response

    def health(self, service: str) -> int:
        return self.health_stub.Check(
            health_pb2.HealthCheckRequest(service=service), timeout=5
        ).status

    def serving(self) -> bool:
        return all(self.health(s) == SERVING for s in ("", EXT_PROC_SERVICE))

    def metric(self, name: str, **labels: str) -> float:
        """One sample of the sidecar's own registry (0 when never recorded)."""
        assert self.running is not None
        value = self.running.metrics.registry.get_sample_value(name, labels)
        return value or 0.0

    def metric_total(self, name: str) -> float:
        """Sum of a metric over all its label values."""
        assert self.running is not None
        return sum(
            sample.value
            for family in self.running.metrics.registry.collect()
            for sample in family.samples
            if sample.name == name
        )

    def reloads(self, outcome: str) -> float:
        return self.metric("tts_canary_rules_reloads_total", outcome=outcome)

    def version(self) -> str | None:
        assert self.running is not None
        snapshot = self.running.holder.current
        return snapshot.version if snapshot else None
