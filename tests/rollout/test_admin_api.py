"""The admin API in-process: the real grpc.aio server over the real controller and a
FileStateStore in tmp_path (plus a fake controller for the failures a file cannot make).

Proves: every action changes the state file and appends an audit line with the caller's
actor; Status shows stage, share, next step, freeze, guard figures and transitions; every
refusal has the right code and a clear message and leaves the state file byte-identical;
a configured token is enforced on every call; off loopback without a token nothing binds.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from extproc.core.model import percent
from extproc.gen.tts_canary.admin.v1 import rollout_admin_pb2 as pb
from extproc.rollout.admin import server as admin_server
from extproc.rollout.admin.server import AdminExtension
from extproc.rollout.admin.wire import phase_name
from extproc.rollout.clock import FakeClock
from extproc.rollout.controller import Controller
from extproc.rollout.stores.state_store import Conflict

from .admin_harness import (
    ACTOR,
    TOKEN,
    AdminThread,
    Client,
    FakeController,
    audit_lines,
    state_on_disk,
)
from .conftest import NOON

Code = grpc.StatusCode


def _refused(call: Callable[..., Any], *args: Any, **kwargs: Any) -> grpc.RpcError:
    """The error of ``call(*args, **kwargs)``, which must fail."""
    with pytest.raises(grpc.RpcError) as caught:
        call(*args, **kwargs)
    return caught.value


def test_each_action_changes_the_state_file_and_audits_the_actor(
    client: Client, state_path: Path
) -> None:
    steps = [
        ("Start", {}, "ramping", "10%"),
        ("SetShare", {"share": "15%"}, "ramping", "15%"),
        ("Pause", {}, "paused", "15%"),
        ("Resume", {}, "ramping", "15%"),
        ("Rollback", {}, "rolled_back", "0%"),
        ("Resume", {}, "ramping", "15%"),  # back to the same users
        ("SetShare", {"share": "12.5%"}, "ramping", "12.5%"),
        ("Promote", {}, "completed", "100%"),
    ]
    for method, extra, phase, share in steps:
        before = state_on_disk(state_path).revision
        response = client.call(method, actor=ACTOR, reason=f"test {method}", **extra)
        on_disk = state_on_disk(state_path)
        assert on_disk.revision == before + 1, method
        assert (on_disk.phase.value, percent(on_disk.share)) == (phase, share), method
        state = response.state
        assert (phase_name(state.phase), state.share, state.revision) == (
            phase,
            share,
            on_disk.revision,
        )
        assert state.share_basis_points == on_disk.share
        last = audit_lines(state_path)[-1]
        assert (last["actor"], last["to_phase"], last["to_share"], last["revision"]) == (
            ACTOR,
            phase,
            share,
            on_disk.revision,
        )
    assert len(audit_lines(state_path)) == len(steps)


def test_status_shows_stage_share_next_step_freeze_guards_and_transitions(
    controller: Controller, client: Client, clock: FakeClock
) -> None:
    client.call("Start", actor=ACTOR)
    asyncio.run(controller.check())  # one guard evaluation (nothing is due yet)
    status = client.call("Status", transitions=5)
    state = status.state
    assert (state.rollout, state.phase, state.stage) == ("admin-test", pb.PHASE_RAMPING, 1)
    assert (state.share, state.share_basis_points, state.revision) == ("10%", 1000, 1)
    assert state.next_step_time.ToSeconds() == NOON.timestamp() + 7200
    assert status.time_to_next_step.ToSeconds() == 7200
    assert status.next_share == "20%"
    assert not status.frozen
    assert status.verdict == pb.VERDICT_PASS
    (figure,) = status.guards
    assert (figure.name, figure.signal, figure.cohort, figure.verdict) == (
        "v2-p95",
        "latency_p95",
        "v2",
        pb.VERDICT_PASS,
    )
    assert (figure.value, figure.threshold, figure.samples, figure.min_samples) == (
        pytest.approx(0.512),
        pytest.approx(0.8),
        1234,
        100,
    )
    assert figure.window.ToSeconds() == 60
    (transition,) = status.transitions
    assert (transition.actor, transition.from_phase, transition.to_phase) == (
        ACTOR,
        pb.PHASE_PENDING,
        pb.PHASE_RAMPING,
    )
    assert (transition.from_share, transition.to_share, transition.revision) == ("0%", "10%", 1)

    clock.set_now(NOON.replace(hour=8))  # inside the 07:00-09:30 freeze window
    assert client.call("Status").frozen


REFUSALS = [
    # (done before, method, request fields, code, message part)
    ((), "Pause", {}, Code.FAILED_PRECONDITION, "cannot pause a rollout that is pending"),
    ((), "Resume", {}, Code.FAILED_PRECONDITION, "cannot resume a rollout that is pending"),
    (("Start",), "Start", {}, Code.FAILED_PRECONDITION, "cannot start a rollout that is ramping"),
    (("Start", "Promote"), "Promote", {}, Code.FAILED_PRECONDITION, "that is completed"),
    ((), "SetShare", {"share": "5%"}, Code.FAILED_PRECONDITION, "a rollout that is pending"),
    (("Start",), "SetShare", {"share": "150%"}, Code.INVALID_ARGUMENT, "allowed 0% to 100%"),
    (("Start",), "SetShare", {"share": "-5%"}, Code.INVALID_ARGUMENT, "allowed 0% to 100%"),
    (("Start",), "SetShare", {"share": "12.345%"}, Code.INVALID_ARGUMENT, "finer than the 0.01%"),
    (("Start",), "SetShare", {"share": "12"}, Code.INVALID_ARGUMENT, "not a percentage"),
    (("Start",), "SetShare", {"share": "x%"}, Code.INVALID_ARGUMENT, "not a number"),
    (("Start",), "SetShare", {"share": "90%"}, Code.INVALID_ARGUMENT, "more than doubles"),
    (("Start",), "Pause", {"actor": " "}, Code.INVALID_ARGUMENT, "an actor is required"),
    (("Start",), "Pause", {"reason": "x" * 600}, Code.INVALID_ARGUMENT, "at most 512"),
]


@pytest.mark.parametrize(
    ("before", "method", "fields", "code", "message"),
    REFUSALS,
    ids=[f"{r[1]}-{r[4][:24]}" for r in REFUSALS],
)
def test_a_refused_request_says_why_and_changes_nothing(
    client: Client,
    state_path: Path,
    before: tuple[str, ...],
    method: str,
    fields: dict[str, str],
    code: grpc.StatusCode,
    message: str,
) -> None:
    for done in before:
        client.call(done, actor=ACTOR)
    state_bytes, audit = state_path.read_bytes(), audit_lines(state_path)
    error = _refused(client.call, method, **{"actor": ACTOR, **fields})
    assert error.code() == code
    assert message in error.details()
    assert state_path.read_bytes() == state_bytes  # same revision, same everything
    assert audit_lines(state_path) == audit


def test_status_refuses_too_many_transitions(client: Client) -> None:
    error = _refused(client.call, "Status", transitions=101)
    assert (error.code(), error.details()) == (
        Code.INVALID_ARGUMENT,
        "at most 100 transitions, not 101",
    )


def test_an_unknown_method_is_unimplemented_and_changes_nothing(
    client: Client, state_path: Path
) -> None:
    state_bytes = state_path.read_bytes()
    explode = client.channel.unary_unary("/tts_canary.admin.v1.RolloutAdmin/Explode")
    assert _refused(explode, b"", timeout=10).code() == Code.UNIMPLEMENTED
    assert state_path.read_bytes() == state_bytes


def test_a_configured_token_is_required_on_every_call_even_on_loopback(
    controller: Controller, start_admin: Callable[..., AdminThread], state_path: Path
) -> None:
    admin = start_admin(controller, token=TOKEN)
    client = Client(admin.target)
    state_bytes = state_path.read_bytes()
    wrong = [
        (),
        (("authorization", "Bearer wrong-token-0123456789"),),
        (("authorization", TOKEN),),  # no scheme
        (("authorization", f"Basic {TOKEN}"),),
        (("authorization", f"Bearer {TOKEN}x"),),
    ]
    for metadata in wrong:
        for method, fields in (("Status", {}), ("Rollback", {"actor": ACTOR})):
            error = _refused(client.call, method, metadata=metadata, **fields)
            assert error.code() == Code.UNAUTHENTICATED, (method, metadata)
            assert "authorization: Bearer <token>" in error.details()
    explode = client.channel.unary_unary("/tts_canary.admin.v1.RolloutAdmin/Explode")
    assert _refused(explode, b"", timeout=10).code() == Code.UNAUTHENTICATED
    assert state_path.read_bytes() == state_bytes

    state = client.call("Rollback", metadata=(("authorization", f"bearer {TOKEN}"),), actor=ACTOR)
    assert state.state.phase == pb.PHASE_ROLLED_BACK
    assert audit_lines(state_path)[-1]["actor"] == ACTOR
    client.close()


@pytest.mark.parametrize(
    "address", ["0.0.0.0:50061", "[::]:50061", "10.1.2.3:50061", "admin.example.com:50061"]
)
def test_off_loopback_without_a_token_is_refused_before_binding(
    address: str, controller: Controller, monkeypatch: pytest.MonkeyPatch
) -> None:
    bound: list[str] = []

    class NotBound:
        async def stop(self, grace: float) -> None:
            return None

    async def start_admin_server(controller: Any, access: Any) -> Any:
        bound.append(access.address)
        return argparse.Namespace(server=NotBound())

    async def enter() -> None:
        async with AdminExtension().companion(argparse.Namespace(admin=address), controller):
            pass

    monkeypatch.setattr(admin_server, "start_admin_server", start_admin_server)
    monkeypatch.delenv("EXTPROC_ADMIN_TOKEN", raising=False)
    with pytest.raises(ValueError) as refused:
        asyncio.run(enter())
    assert str(refused.value) == (
        f"refusing to serve the admin API on {address} without a token: set "
        "EXTPROC_ADMIN_TOKEN, or bind loopback (127.0.0.1:PORT) or unix:PATH"
    )
    assert bound == []
    monkeypatch.setenv("EXTPROC_ADMIN_TOKEN", TOKEN)
    asyncio.run(enter())  # with a token the same address is served
    assert bound == [address]


def test_a_unix_socket_needs_no_token(
    controller: Controller, start_admin: Callable[..., AdminThread], tmp_path: Path
) -> None:
    admin = start_admin(controller, address=f"unix:{tmp_path}/admin.sock")
    client = Client(admin.target)
    assert client.call("Status").state.phase == pb.PHASE_PENDING
    client.close()


def test_the_server_hands_the_controller_plain_validated_values(
    start_admin: Callable[..., AdminThread],
) -> None:
    fake = FakeController()
    client = Client(start_admin(fake).target)
    response = client.call("SetShare", actor="  bob@cli ", share=" 12.5% ", reason=" MOS ok ")
    assert fake.calls == [("set-share", "bob@cli", 1250, "MOS ok")]
    assert (response.state.share, response.state.share_basis_points) == ("12.5%", 1250)
    assert response.state.operator_reason == "MOS ok"
    client.close()


@pytest.mark.parametrize(
    ("failure", "code"),
    [
        (Conflict("the state kept changing; pause not applied, try again"), Code.ABORTED),
        (OSError("state.json: disk full"), Code.UNAVAILABLE),
    ],
)
def test_store_failures_map_to_retryable_codes(
    start_admin: Callable[..., AdminThread], failure: Exception, code: grpc.StatusCode
) -> None:
    client = Client(start_admin(FakeController(failure)).target)
    error = _refused(client.call, "Pause", actor=ACTOR)
    assert (error.code(), error.details()) == (code, str(failure))
    client.close()


def test_status_says_when_the_state_cannot_be_read(
    start_admin: Callable[..., AdminThread],
) -> None:
    failure = ValueError("state.json: not a rollout state: Expecting value")
    client = Client(start_admin(FakeController(failure)).target)
    error = _refused(client.call, "Status")
    assert (error.code(), error.details()) == (
        Code.UNAVAILABLE,
        f"cannot read the state: {failure}",
    )
    client.close()
