"""``extproc health``: ask a gRPC health service (grpc.health.v1 Check) whether it serves.

The container image's HEALTHCHECK runs it against the sidecar in the same container; an
operator can point it anywhere. It dials ``--addr`` (default: the sidecar's own EXTPROC_LISTEN,
with a wildcard host such as 0.0.0.0 or [::] dialled on loopback), asks about ``--service``
(default "": the whole server) and prints the answer (SERVING, NOT_SERVING, ...).

Exit codes: 0 SERVING; 1 anything else (not serving yet, unknown service, nothing listening,
timeout), with the reason on stderr. 1 is what Docker reads as unhealthy; it reserves 2.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from extproc.settings import LISTEN, env

EXT_PROC_SERVICE = "envoy.service.ext_proc.v3.ExternalProcessor"
DEFAULT_TIMEOUT = 2.0
#: A server bound to one of these listens on every address; dial it on loopback.
_WILDCARDS = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "[::1]", "[::]": "[::1]"}


def register(subparsers: Any) -> None:
    """Add ``health`` to an argparse subparsers object (sets ``func``)."""
    p = subparsers.add_parser(
        "health",
        help="check a gRPC health service (exit 0 if SERVING, else 1)",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    p.add_argument(
        "--addr",
        default="",
        metavar="ADDR",
        help=f"host:port or unix:PATH (default: {LISTEN.env}, now {dial_target(env(LISTEN))})",
    )
    p.add_argument(
        "--service",
        default="",
        metavar="NAME",
        help=f"service to ask about (default '': the server; the sidecar also answers "
        f"{EXT_PROC_SERVICE})",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help="deadline of the call (default %(default)s)",
    )
    p.set_defaults(func=run)


def dial_target(listen: str) -> str:
    """Where to dial a server that listens on ``listen``: a wildcard host becomes loopback."""
    if listen.startswith("unix:"):
        return listen
    host, sep, port = listen.rpartition(":")
    if not sep:
        return listen
    return f"{_WILDCARDS.get(host, host)}:{port}"


def check(target: str, service: str, timeout: float) -> tuple[bool, str]:
    """(serving, what was answered or why there is no answer). Never raises for the peer."""
    import grpc  # here, not at import: ``extproc --help`` stays cheap
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    request = health_pb2.HealthCheckRequest(service=service)
    with grpc.insecure_channel(target) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(request, timeout=timeout)
        except grpc.RpcError as exc:
            details = " ".join(str(exc.details() or "").split())
            return False, f"{exc.code().name}: {details}"
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    return reply.status == health_pb2.HealthCheckResponse.SERVING, status


def run(args: argparse.Namespace) -> int:
    if not args.timeout > 0:
        print("extproc health: --timeout must be greater than 0", file=sys.stderr)
        return 1
    target = args.addr or dial_target(env(LISTEN))
    serving, answer = check(target, args.service, args.timeout)
    if serving:
        print(answer)
        return 0
    print(f"extproc health: {target} service {args.service!r}: {answer}", file=sys.stderr)
    return 1
