"""What went wrong with etcd, in classes every loop can handle, retry and count. Pure.

etcd and grpc say the same few things in many ways. :func:`classify` maps one member's
answer (a gRPC status code name and its details) to a :class:`Fault`:

    unreachable     no answer at all: connection refused, member killed, socket closed,
                    stream reset (gRPC UNAVAILABLE / CANCELLED from the transport; INTERNAL
                    not from etcd, e.g. grpc's "Internal error from Core" on a dying channel)
    timeout         the request's deadline passed: DEADLINE_EXCEEDED, or etcd's own
                    "context deadline exceeded" (UNKNOWN) and "request timed out" (UNAVAILABLE),
                    which etcd sends when its deadline (the client's, propagated) fires first
    no_leader       the member is up but has no raft leader ("etcdserver: no leader"): an
                    election is under way, or the member is cut off from the quorum
    leader_changed  the raft leader changed while the request was in flight
    unhealthy       the member answered but cannot serve (stopped, not capable, unhealthy)
    overloaded      "too many requests" (RESOURCE_EXHAUSTED)
    compacted       a watch or read asked for history etcd has compacted away
    refused         anything else: a real refusal (a bad request, a permission); not retried

Every class but ``refused`` (and ``compacted``, which needs a fresh read, not another member)
is worth trying on another member. :func:`diagnose` turns what each member said into one
sentence for the operator: quorum lost (N of M members reachable), election under way, or
unreachable, and what to do.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum


class Fault(StrEnum):
    UNREACHABLE = "unreachable"
    TIMEOUT = "timeout"
    NO_LEADER = "no_leader"
    LEADER_CHANGED = "leader_changed"
    UNHEALTHY = "unhealthy"
    OVERLOADED = "overloaded"
    COMPACTED = "compacted"
    REFUSED = "refused"


#: Faults after which another member (or the same one a moment later) may well answer.
RETRIED = frozenset(Fault) - {Fault.REFUSED, Fault.COMPACTED}
#: Faults that prove the member answered (it is reachable, whatever it said).
ANSWERED = frozenset(Fault) - {Fault.UNREACHABLE, Fault.TIMEOUT}
#: The class a loop counts a failure under when it is not etcd's (no ``fault``).
UNEXPECTED = "unexpected"


def fault_of(exc: BaseException) -> str:
    """The class a failure is counted under: its ``fault`` (an EtcdError's), else UNEXPECTED."""
    fault = getattr(exc, "fault", None)
    return fault if isinstance(fault, str) and fault else UNEXPECTED


_TRANSPORT = ("rst_stream", "stream removed", "socket closed", "connection reset", "goaway")


def classify(code: str, details: str) -> Fault:
    """One member's failed answer: ``code`` a gRPC status code name (``UNAVAILABLE``),
    ``details`` its message."""
    text = details.lower()
    if "no leader" in text:
        return Fault.NO_LEADER
    if "leader changed" in text:
        return Fault.LEADER_CHANGED
    if "compacted" in text:
        return Fault.COMPACTED
    if (
        code == "DEADLINE_EXCEEDED"
        or "deadline exceeded" in text
        or "timed out" in text
        or "context canceled" in text
    ):
        return Fault.TIMEOUT
    if code == "RESOURCE_EXHAUSTED" or "too many requests" in text:
        return Fault.OVERLOADED
    if code == "UNAVAILABLE":
        return Fault.UNHEALTHY if "etcdserver:" in text else Fault.UNREACHABLE
    if code == "CANCELLED" or (code == "UNKNOWN" and _transport(text)):
        return Fault.UNREACHABLE
    if code == "INTERNAL" and "etcdserver:" not in text:
        return Fault.UNREACHABLE  # grpc's own ("Internal error from Core", RST_STREAM)
    return Fault.REFUSED


def _transport(text: str) -> bool:
    return any(marker in text for marker in _TRANSPORT)


def quorum(total: int) -> int:
    """Members that must run for a cluster of ``total`` to have a leader."""
    return total // 2 + 1


def diagnose(faults: Mapping[str, Fault], total: int) -> tuple[str, str]:
    """The outage from what each member said (``target -> fault``; members not in
    ``faults`` did not get asked): its class (``quorum_lost``, ``unreachable``,
    ``electing``, ``timeout`` or a fault's name) and one sentence for the operator naming
    the cause and what to do."""
    reachable = sum(1 for f in faults.values() if f in ANSWERED)
    need = quorum(total)
    seen = f"{reachable} of {total} members reachable"
    if not faults:
        return "timeout", f"etcd did not answer in time ({total} members): check that etcd runs"
    if reachable == 0 and all(f is Fault.TIMEOUT for f in faults.values()):
        return "timeout", (
            f"etcd did not answer in time ({seen}): it may be overloaded or partitioned; "
            "retry in a few seconds"
        )
    if reachable == 0:
        return "unreachable", (
            f"etcd unreachable: {seen}; start the etcd members or fix the network to them "
            f"(the cluster needs {need} of {total})"
        )
    if reachable < need:
        return "quorum_lost", (
            f"etcd quorum lost: {seen}, none with a raft leader; bring back members until "
            f"{need} of {total} run (nothing can change meanwhile; sidecars keep the last state)"
        )
    if any(f in (Fault.NO_LEADER, Fault.LEADER_CHANGED) for f in faults.values()):
        return "electing", f"etcd is electing a raft leader ({seen}): retry in a few seconds"
    kinds = sorted({f.value for f in faults.values()})
    return kinds[0] if len(kinds) == 1 else "mixed", (
        f"etcd members failing ({', '.join(kinds)}; {seen}): retry in a few seconds"
    )
