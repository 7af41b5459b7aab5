"""Harness for the admin API tests (helpers; fixtures live in conftest.py).

``AdminThread`` runs the real admin server (``run_admin_server``) on its own asyncio loop
in a background thread, so tests stay synchronous and call it over a real gRPC channel
with the generated stubs. Nothing here sleeps for a fixed time.
"""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

import grpc

from extproc.gen.tts_canary.admin.v1 import rollout_admin_pb2 as pb
from extproc.gen.tts_canary.admin.v1 import rollout_admin_pb2_grpc as pb_grpc
from extproc.rollout.admin.access import AdminAccess, bearer
from extproc.rollout.admin.server import RolloutController, RunningAdmin, run_admin_server
from extproc.rollout.guards.judge import Reading
from extproc.rollout.policy import Guard
from extproc.rollout.state import RolloutState

TOKEN = "s3cret-admin-token-0123456789"
ACTOR = "alice@cli"

#: A ramp policy with one built-in guard; freeze 07:00-09:30 UTC.
POLICY = b"""\
policy:
  rollout: admin-test
  initial_share: 10%
  step: 10%
  step_interval: 2h
  rollback_share: 0%
  freeze: {timezone: UTC, windows: ["07:00-09:30"]}
  guards:
    - {name: v2-p95, signal: latency_p95, cohort: v2, threshold: 800ms, window: 60s,
       min_samples: 100}
"""


class FixedSource:
    """A guard source that always reads the same figures (what status then shows)."""

    def __init__(self, value: float | None = 0.512, samples: int = 1234) -> None:
        self.reading = Reading(value, samples)

    async def refresh(self) -> None:
        return None

    def read(self, guard: Guard) -> Reading:
        return self.reading


class FakeController:
    """The admin API's view of a controller, failing on demand; records what it got."""

    def __init__(self, failure: Exception | None = None) -> None:
        self.failure = failure
        self.calls: list[tuple[str, str, int | None, str]] = []

    async def status_async(self, transitions: int = 10) -> dict[str, Any]:
        raise self.failure or NotImplementedError

    async def apply_async(
        self, action: str, actor: str, share: int | None = None, reason: str = ""
    ) -> Any:
        self.calls.append((action, actor, share, reason))
        if self.failure is not None:
            raise self.failure
        return RolloutState(rollout="fake", revision=3, share=share or 0)


class AdminThread:
    """The real admin server over ``controller`` on its own event loop thread."""

    def __init__(self, controller: RolloutController, access: AdminAccess) -> None:
        self.running: RunningAdmin | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(
            target=asyncio.run, args=(self._serve(controller, access),), daemon=True
        )
        self._thread.start()
        if not self._ready.wait(10) or self.running is None:
            raise RuntimeError("admin server did not start") from self._failure
        self.target = self.running.target

    async def _serve(self, controller: RolloutController, access: AdminAccess) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            async with run_admin_server(controller, access, grace=1.0) as running:
                self.running = running
                self._ready.set()
                await self._stop.wait()
        except BaseException as exc:
            self._failure = exc
            raise
        finally:
            self._ready.set()

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(15)
        assert not self._thread.is_alive(), "admin server thread did not stop"


class Client:
    """A blocking admin API client: ``call('Pause', actor=..)`` returns the response."""

    REQUESTS = {
        "Status": pb.StatusRequest,
        "Start": pb.StartRequest,
        "Pause": pb.PauseRequest,
        "Resume": pb.ResumeRequest,
        "Rollback": pb.RollbackRequest,
        "Promote": pb.PromoteRequest,
        "SetShare": pb.SetShareRequest,
    }

    def __init__(self, target: str, token: str = "") -> None:
        self.channel = grpc.insecure_channel(target)
        self.stub = pb_grpc.RolloutAdminStub(self.channel)
        self.metadata = bearer(token)

    def call(self, method: str, metadata: Any = None, **fields: Any) -> Any:
        request = self.REQUESTS[method](**fields)
        return getattr(self.stub, method)(
            request, timeout=10, metadata=self.metadata if metadata is None else metadata
        )

    def close(self) -> None:
        self.channel.close()


def state_on_disk(path: Path) -> RolloutState:
    return RolloutState.from_json(json.loads(path.read_text()))


def audit_lines(path: Path) -> list[dict[str, Any]]:
    audit = path.with_name(path.name + ".audit.jsonl")
    if not audit.exists():
        return []
    return [json.loads(line) for line in audit.read_text().splitlines()]
