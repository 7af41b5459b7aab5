"""Plain data in and out of the etcd client (no protobuf beyond etcd_client.py)."""

from __future__ import annotations

from dataclasses import dataclass, field


class EtcdError(RuntimeError):
    """etcd refused a request (not a connectivity problem). ``fault`` is its class (see
    etcd_faults.py): ``refused``, or ``compacted`` for history etcd no longer has."""

    def __init__(self, message: str, fault: str = "refused") -> None:
        super().__init__(message)
        self.fault = fault


class EtcdUnavailable(OSError):
    """No member of the cluster could serve the request (down, unreachable, no quorum).

    ``fault`` is the class of the outage (``quorum_lost``, ``unreachable``, ``no_leader``,
    ``timeout``, ...; see etcd_faults.py) and ``diagnosis`` the sentence for the operator
    (the cause, N of M members reachable, what to do); ``str()`` adds what each member said.
    """

    def __init__(self, message: str, fault: str = "unreachable", diagnosis: str = "") -> None:
        super().__init__(message)
        self.fault = fault
        self.diagnosis = diagnosis or message

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True, slots=True)
class Entry:
    key: str
    value: bytes
    mod_revision: int
    create_revision: int
    lease: int = 0


@dataclass(frozen=True, slots=True)
class Compare:
    """``key``'s ``target`` (``mod``, ``create`` revision or ``value``) equals ``value``;
    a missing key has revision 0."""

    key: str
    target: str
    value: int | bytes


@dataclass(frozen=True, slots=True)
class Put:
    key: str
    value: bytes
    lease: int = 0


@dataclass(frozen=True, slots=True)
class TxnResult:
    succeeded: bool
    revision: int  # the store's revision after the transaction
    reads: dict[str, Entry | None] = field(default_factory=dict)  # on failure only


@dataclass(frozen=True, slots=True)
class WatchEvent:
    kind: str  # "put" or "delete"
    entry: Entry
