"""``extproc rollout``: the switch on the command line, through the admin API.

    extproc rollout status                  stage, share, next step, freeze, guards, history
    extproc rollout start | pause | resume | rollback | promote
    extproc rollout set-share 12.5%
    extproc rollout controller ...          run the controller (and its admin API)

Each client command dials ``--admin`` (EXTPROC_ADMIN, default 127.0.0.1:50061, or
unix:PATH) and sends EXTPROC_ADMIN_TOKEN as a bearer token when it is set; the token is
never a flag (argv is visible to every user). Changes are made as ``--actor`` (default
``$USER@cli``) with ``--reason``; the audit log records both. ``--json`` prints the result
as JSON. A change sent to a standby replica is refused with the leader's admin address;
``--follow-leader`` sends it there instead (once, with the same token).

Exit codes (errors are one line on stderr):
  0  done
  1  refused by the admin API (the message says why; nothing changed)
  2  bad usage
  3  the admin API could not be reached (nothing listens at --admin, or it timed out)
  4  the admin API answered but its state store (etcd) failed: the message names the
     cause (e.g. "etcd quorum lost: 1 of 3 members reachable") and what to do; a change
     may or may not have been written: check ``status`` once the store is back
  5  the replica at --admin stands by: the message names the leader's admin address;
     rerun with --admin ADDR or --follow-leader
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from typing import Any

import grpc

from extproc.gen.tts_canary.admin.v1 import rollout_admin_pb2 as pb
from extproc.gen.tts_canary.admin.v1 import rollout_admin_pb2_grpc as pb_grpc
from extproc.rollout import controller_command
from extproc.rollout.admin import wire
from extproc.rollout.admin.access import ADMIN, ADMIN_TOKEN, bearer
from extproc.rollout.admin.server import (
    ERROR_KEY,
    LEADER_ADMIN_KEY,
    STORE_FAULT_KEY,
    AdminExtension,
)
from extproc.rollout.admin.table import render_state, render_status
from extproc.settings import env

DEFAULT_TIMEOUT = 5.0
UNREACHABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_STORE, EXIT_STANDBY = 1, 2, 3, 4, 5
#: command -> (RPC method, request type, help)
CHANGES: dict[str, tuple[str, Any, str]] = {
    "start": ("Start", pb.StartRequest, "pending -> ramping at the initial share"),
    "pause": ("Pause", pb.PauseRequest, "stop the ramp where it is (guards keep watching)"),
    "resume": ("Resume", pb.ResumeRequest, "ramp on; after a rollback, back to the same users"),
    "rollback": ("Rollback", pb.RollbackRequest, "send traffic back to v1 now"),
    "promote": ("Promote", pb.PromoteRequest, "v2 to 100%%: it becomes the default"),
    "set-share": ("SetShare", pb.SetShareRequest, "set the v2 share, e.g. 12.5%%"),
}


def register(subparsers: Any) -> None:
    """Add the ``rollout`` command group to an argparse subparsers object (sets ``func``)."""
    rollout = subparsers.add_parser(
        "rollout",
        help="the rollout switch: status, start, pause, resume, rollback, promote, set-share",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = rollout.add_subparsers(dest="rollout_command", required=True, metavar="COMMAND")
    client = argparse.ArgumentParser(add_help=False)
    client.add_argument(
        "--admin",
        default=env(ADMIN),
        metavar="ADDR",
        help=f"admin API address (default from {ADMIN.env}: %(default)s)",
    )
    client.add_argument("--json", action="store_true", help="print the result as JSON")
    client.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds (default %(default)s)"
    )
    status = sub.add_parser("status", parents=[client], help="show the rollout")
    status.add_argument(
        "--transitions",
        type=int,
        default=wire.DEFAULT_TRANSITIONS,
        metavar="N",
        help=f"last N transitions (1..{wire.MAX_TRANSITIONS}, default %(default)s)",
    )
    status.set_defaults(func=_status)
    change = argparse.ArgumentParser(add_help=False, parents=[client])
    change.add_argument(
        "--actor", default=_default_actor(), help="who asks (audited; default %(default)s)"
    )
    change.add_argument(
        "--reason", default="", help="why, in your words (audited as operator_reason)"
    )
    change.add_argument(
        "--follow-leader",
        action="store_true",
        help="if --admin is a standby, send the change to the leader it names (once)",
    )
    for name, (_, _, summary) in CHANGES.items():
        p = sub.add_parser(name, parents=[change], help=summary)
        if name == "set-share":
            p.add_argument("share", metavar="SHARE", help="a percentage, e.g. 12.5%%")
        p.set_defaults(func=_change, action=name)
    controller_command.register(sub, AdminExtension())


def _default_actor() -> str:
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no USER variable and no passwd entry (containers)
        user = "unknown"
    return f"{user}@cli"


class _Refused(Exception):
    """A failed call: ``message`` for stderr, ``exit_code`` for the shell."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _status(args: argparse.Namespace) -> int:
    if not 1 <= args.transitions <= wire.MAX_TRANSITIONS:
        return _fail("status", f"--transitions must be within 1..{wire.MAX_TRANSITIONS}", 2)
    try:
        response = _call(args, "Status", pb.StatusRequest(transitions=args.transitions))
    except _Refused as exc:
        return _fail("status", str(exc), exc.exit_code)
    status = wire.status_json(response)
    print(json.dumps(status, indent=1) if args.json else render_status(status))
    return 0


def _change(args: argparse.Namespace) -> int:
    method, request_type, _ = CHANGES[args.action]
    fields = {"actor": args.actor, "reason": args.reason}
    if args.action == "set-share":
        fields["share"] = args.share
    try:
        response = _call(args, method, request_type(**fields))
    except _Standby as exc:
        if not (args.follow_leader and exc.leader_admin):
            return _fail(args.action, str(exc), exc.exit_code)
        print(
            f"extproc rollout {args.action}: following the leader to {exc.leader_admin}",
            file=sys.stderr,
        )
        args.admin = exc.leader_admin
        try:
            response = _call(args, method, request_type(**fields))
        except _Refused as again:
            return _fail(args.action, str(again), again.exit_code)
    except _Refused as exc:
        return _fail(args.action, str(exc), exc.exit_code)
    state = wire.state_json(response.state)
    print(json.dumps(state, indent=1) if args.json else render_state(args.action, state))
    return 0


class _Standby(_Refused):
    """The replica asked stands by; ``leader_admin`` is where the leader listens."""

    def __init__(self, message: str, leader_admin: str) -> None:
        super().__init__(message, EXIT_STANDBY)
        self.leader_admin = leader_admin


def _call(args: argparse.Namespace, method: str, request: Any) -> Any:
    """One unary call with the bearer token; _Refused with the exit code of the module
    docstring (_Standby for a standby)."""
    metadata = bearer(os.environ.get(ADMIN_TOKEN.env, ""))
    with grpc.insecure_channel(args.admin) as channel:
        stub = pb_grpc.RolloutAdminStub(channel)
        try:
            return getattr(stub, method)(request, timeout=args.timeout, metadata=metadata)
        except grpc.RpcError as exc:
            code, details = exc.code(), " ".join(str(exc.details() or "").split())
            trailing = dict(_trailing(exc))
    said = trailing.get(ERROR_KEY)
    if said == "store-unavailable":
        fault = trailing.get(STORE_FAULT_KEY, "unknown")
        raise _Refused(
            f"the controller at {args.admin} cannot use its state store ({fault}): {details}",
            EXIT_STORE,
        )
    if said == "not-leader":
        leader = trailing.get(LEADER_ADMIN_KEY, "")
        where = (
            f"rerun with --admin {leader} or --follow-leader"
            if leader
            else "no leader address known yet: retry in a few seconds"
        )
        raise _Standby(f"{details}: {args.admin} stands by; {where}", leader)
    if code in UNREACHABLE:
        raise _Refused(f"admin API at {args.admin} unavailable: {details}", EXIT_UNREACHABLE)
    raise _Refused(f"{details} [{code.name}]", EXIT_REFUSED)


def _trailing(exc: grpc.RpcError) -> list[tuple[str, str]]:
    getter = getattr(exc, "trailing_metadata", None)
    found = getter() if callable(getter) else None
    return [(str(k), str(v)) for k, v in (found or ())]


def _fail(command: str, message: str, code: int) -> int:
    print(f"extproc rollout {command}: {message}", file=sys.stderr)
    return code
