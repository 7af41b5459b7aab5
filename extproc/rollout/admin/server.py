"""The admin API server (grpc.aio): ``tts_canary.admin.v1.RolloutAdmin`` over a controller.

Contract:
- Listens where ``AdminAccess`` says (``admin_access.check_access`` refuses an address off
  loopback without a token before anything is bound). With a token, every call must carry
  ``authorization: Bearer <token>``; otherwise UNAUTHENTICATED, before any handler runs.
- Each change goes through ``controller.apply_async`` as the caller's actor with the
  caller's reason (the audit log records both: ``actor``, ``operator_reason``).
- A refused request changes nothing: INVALID_ARGUMENT (malformed), FAILED_PRECONDITION (the
  phase does not allow it; or a standby: trailing metadata ``x-rollout-error: not-leader``
  and ``x-rollout-leader-admin``), ABORTED (the state kept changing), UNAVAILABLE (the state
  store failed: ``x-rollout-error: store-unavailable``, ``x-rollout-store-fault: <class>``;
  the message names the cause, e.g. etcd's quorum lost with N of M members reachable).
  Anything else is INTERNAL (and logged with its traceback). The message says what is wrong.

``run_admin_server`` is the async context manager that the controller process and tests
use; ``AdminExtension`` plugs it into ``extproc rollout controller``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import grpc

from extproc.core.model import percent
from extproc.gen.tts_canary.admin.v1 import rollout_admin_pb2 as pb
from extproc.gen.tts_canary.admin.v1 import rollout_admin_pb2_grpc as pb_grpc
from extproc.rollout.admin import wire
from extproc.rollout.admin.access import ADMIN, ADMIN_TOKEN, AdminAccess, authorized, check_access
from extproc.rollout.state import RolloutState, TransitionError
from extproc.rollout.status_view import failure_class
from extproc.rollout.stores.state_store import Conflict
from extproc.settings import env

log = logging.getLogger("extproc.rollout.admin")
GRACE_SECONDS = 2.0
ERROR_KEY = "x-rollout-error"  # trailing metadata: not-leader | store-unavailable
LEADER_ADMIN_KEY = "x-rollout-leader-admin"
STORE_FAULT_KEY = "x-rollout-store-fault"
ChangeRequest = (
    pb.StartRequest
    | pb.PauseRequest
    | pb.ResumeRequest
    | pb.RollbackRequest
    | pb.PromoteRequest
    | pb.SetShareRequest
)


class RolloutController(Protocol):
    """What the admin API needs of the controller (``extproc.rollout.controller``)."""

    async def status_async(self, transitions: int = 10) -> dict[str, Any]:
        """See ``Controller.status``; OSError/ValueError if the state cannot be read."""
        ...

    async def apply_async(
        self, action: str, actor: str, share: int | None = None, reason: str = ""
    ) -> RolloutState:
        """See ``Controller.apply``: TransitionError, ValueError, Conflict, OSError (and the
        store's own errors, which carry a ``fault`` class)."""
        ...


@dataclass(frozen=True, slots=True)
class RunningAdmin:
    """A running admin API: ``target`` is what a client dials (``host:port`` or ``unix:``)."""

    server: grpc.aio.Server
    target: str
    port: int


class _Servicer(pb_grpc.RolloutAdminServicer):
    def __init__(self, controller: RolloutController) -> None:
        self._controller = controller

    async def Status(
        self, request: pb.StatusRequest, context: grpc.aio.ServicerContext
    ) -> pb.StatusResponse:
        try:
            wanted = wire.transitions_wanted(request.transitions)
        except ValueError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        try:
            status = await self._controller.status_async(wanted)
        except Exception as exc:  # the store failed (any class): say which way
            _store_metadata(context, exc)
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"cannot read the state: {exc}")
        return wire.status_message(status)

    async def Start(
        self, request: pb.StartRequest, context: grpc.aio.ServicerContext
    ) -> pb.StartResponse:
        return pb.StartResponse(state=await self._apply("start", request, context))

    async def Pause(
        self, request: pb.PauseRequest, context: grpc.aio.ServicerContext
    ) -> pb.PauseResponse:
        return pb.PauseResponse(state=await self._apply("pause", request, context))

    async def Resume(
        self, request: pb.ResumeRequest, context: grpc.aio.ServicerContext
    ) -> pb.ResumeResponse:
        return pb.ResumeResponse(state=await self._apply("resume", request, context))

    async def Rollback(
        self, request: pb.RollbackRequest, context: grpc.aio.ServicerContext
    ) -> pb.RollbackResponse:
        return pb.RollbackResponse(state=await self._apply("rollback", request, context))

    async def Promote(
        self, request: pb.PromoteRequest, context: grpc.aio.ServicerContext
    ) -> pb.PromoteResponse:
        return pb.PromoteResponse(state=await self._apply("promote", request, context))

    async def SetShare(
        self, request: pb.SetShareRequest, context: grpc.aio.ServicerContext
    ) -> pb.SetShareResponse:
        return pb.SetShareResponse(state=await self._apply("set-share", request, context))

    async def _apply(
        self, action: str, request: ChangeRequest, context: grpc.aio.ServicerContext
    ) -> pb.RolloutState:
        """Validate, apply as the caller's actor, log with the reason; abort on refusal."""
        try:
            actor = wire.check_actor(request.actor)
            reason = wire.check_reason(request.reason)
            share = (
                wire.parse_share(request.share) if isinstance(request, pb.SetShareRequest) else None
            )
        except ValueError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        try:
            state = await self._controller.apply_async(action, actor, share, reason)
        except Exception as exc:
            code = _code_for(exc)
            if code is grpc.StatusCode.UNAVAILABLE:
                _store_metadata(context, exc)
            elif hasattr(exc, "leader_admin"):
                context.set_trailing_metadata(
                    ((ERROR_KEY, "not-leader"), (LEADER_ADMIN_KEY, str(exc.leader_admin)))
                )
            elif code is grpc.StatusCode.INTERNAL:
                log.exception("admin: %s by %s failed unexpectedly", action, actor)
            await _refuse(context, code, action, actor, exc)
        log.info(
            "admin: %s by %s (reason: %s): rollout %s r%d %s, share %s",
            action,
            actor,
            reason or "none given",
            state.rollout,
            state.revision,
            state.phase.value,
            percent(state.share),
        )
        return wire.state_message(state, reason)


def _code_for(exc: Exception) -> grpc.StatusCode:
    """A store failure (it carries a ``fault`` class, or is an OSError) is UNAVAILABLE
    before anything else: a standby that cannot reach etcd says so, not "not the leader"."""
    if getattr(exc, "fault", None) or isinstance(exc, OSError):
        return grpc.StatusCode.UNAVAILABLE
    if isinstance(exc, TransitionError):
        return grpc.StatusCode.FAILED_PRECONDITION
    if isinstance(exc, ValueError):
        return grpc.StatusCode.INVALID_ARGUMENT
    if isinstance(exc, Conflict):
        return grpc.StatusCode.ABORTED
    return grpc.StatusCode.INTERNAL


def _store_metadata(context: grpc.aio.ServicerContext, exc: Exception) -> None:
    context.set_trailing_metadata(
        ((ERROR_KEY, "store-unavailable"), (STORE_FAULT_KEY, failure_class(exc)))
    )


async def _refuse(
    context: grpc.aio.ServicerContext,
    code: grpc.StatusCode,
    action: str,
    actor: str,
    exc: Exception,
) -> None:
    log.info("admin: %s by %s refused (%s): %s", action, actor, code.name, exc)
    await context.abort(code, str(exc))


class _RequireToken(grpc.aio.ServerInterceptor):
    """Every call, known method or not, must carry the bearer token."""

    def __init__(self, token: str) -> None:
        self._token = token
        self._deny = grpc.unary_unary_rpc_method_handler(self._unauthenticated)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        metadata = dict(details.invocation_metadata or ())
        if authorized(metadata.get("authorization"), self._token):
            return await continuation(details)
        return self._deny

    @staticmethod
    async def _unauthenticated(request: bytes, context: grpc.aio.ServicerContext) -> None:
        await context.abort(
            grpc.StatusCode.UNAUTHENTICATED,
            f"a valid 'authorization: Bearer <token>' is required ({ADMIN_TOKEN.env})",
        )


async def start_admin_server(controller: RolloutController, access: AdminAccess) -> RunningAdmin:
    """Serve the admin API on ``access.address`` (port 0 picks a free port); stop it with
    ``running.server.stop(grace)``. OSError if the address cannot be bound."""
    interceptors = [_RequireToken(access.token)] if access.token else []
    server = grpc.aio.server(interceptors=interceptors, options=[("grpc.so_reuseport", 0)])
    pb_grpc.add_RolloutAdminServicer_to_server(_Servicer(controller), server)
    try:
        port = server.add_insecure_port(access.address)
    except RuntimeError as exc:  # grpc reports a failed bind this way
        raise OSError(f"cannot listen on {access.address}: {exc}") from None
    await server.start()
    target = access.address if access.address.startswith("unix:") else _target(access, port)
    log.info("admin API on %s (%s)", target, "token required" if access.token else "no token")
    return RunningAdmin(server, target, port)


@contextlib.asynccontextmanager
async def run_admin_server(
    controller: RolloutController, access: AdminAccess, grace: float = GRACE_SECONDS
) -> AsyncIterator[RunningAdmin]:
    """:func:`start_admin_server` until exit; then stop accepting and let calls in flight
    finish for ``grace`` seconds."""
    running = await start_admin_server(controller, access)
    try:
        yield running
    finally:
        await running.server.stop(grace)


def _target(access: AdminAccess, port: int) -> str:
    host = access.address.rpartition(":")[0] or "127.0.0.1"
    return f"{host}:{port}"


class AdminExtension:
    """Runs the admin API inside ``extproc rollout controller`` (its ``--admin`` option)."""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--admin",
            default=env(ADMIN),
            metavar="ADDR",
            help=f"{ADMIN.help}; '' = no admin API. Off loopback {ADMIN_TOKEN.env} is required"
            f" (default from {ADMIN.env}: %(default)s)",
        )

    @contextlib.asynccontextmanager
    async def companion(
        self, args: argparse.Namespace, controller: RolloutController
    ) -> AsyncIterator[None]:
        """ValueError (the controller exits 2) for a bad address, a missing or short token,
        or an address that cannot be bound; checked before anything is bound."""
        if not args.admin:
            yield
            return
        access = check_access(args.admin, os.environ.get(ADMIN_TOKEN.env, ""))
        try:
            running = await start_admin_server(controller, access)
        except OSError as exc:
            raise ValueError(f"admin API: {exc}") from None
        try:
            yield
        finally:
            await running.server.stop(GRACE_SECONDS)
