"""Who may use the admin API: where it listens and which token it requires. Pure.

The admin API changes what every user hears, so it is local by default: loopback
(``127.0.0.1:50061``) or a unix socket. Bound anywhere else it requires a bearer
token (``EXTPROC_ADMIN_TOKEN``) and refuses to start without one. A configured
token is enforced on every address, loopback included.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from dataclasses import dataclass

from extproc.addresses import split_host_port
from extproc.settings import Setting

ADMIN = Setting("EXTPROC_ADMIN", "127.0.0.1:50061", "admin API address (host:port or unix:PATH)")
ADMIN_TOKEN = Setting(
    "EXTPROC_ADMIN_TOKEN",
    "",
    "admin API bearer token; required when the admin API is bound off loopback",
)
MIN_TOKEN_LENGTH = 16
SCHEME = "Bearer "


@dataclass(frozen=True, slots=True)
class AdminAccess:
    """A validated admin address and its token ('' = no token required)."""

    address: str
    token: str = ""


def is_local(address: str) -> bool:
    """True for ``unix:PATH`` and loopback ``host:port`` (127.0.0.0/8, ::1, localhost);
    False for anything else (other hosts, other gRPC schemes such as unix-abstract:)."""
    if address.startswith("unix:"):
        return True
    try:
        host, _ = split_host_port(address)
    except ValueError:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def check_access(address: str, token: str) -> AdminAccess:
    """Validate an admin address and token, or raise ValueError saying what to do.

    Refused: a malformed address; a token shorter than ``MIN_TOKEN_LENGTH``; a
    non-local address without a token.
    """
    if not address.startswith("unix:"):
        try:
            split_host_port(address)
        except ValueError as exc:
            raise ValueError(f"--admin (or {ADMIN.env}): {exc}") from None
    elif address == "unix:":
        raise ValueError(f"--admin (or {ADMIN.env}): 'unix:' needs a socket path")
    if token and len(token) < MIN_TOKEN_LENGTH:
        raise ValueError(
            f"{ADMIN_TOKEN.env}: the token is too short ({len(token)} characters); "
            f"use at least {MIN_TOKEN_LENGTH}"
        )
    if not token and not is_local(address):
        raise ValueError(
            f"refusing to serve the admin API on {address} without a token: "
            f"set {ADMIN_TOKEN.env}, or bind loopback (127.0.0.1:PORT) or unix:PATH"
        )
    return AdminAccess(address, token)


def authorized(authorization: str | None, token: str) -> bool:
    """Whether an ``authorization`` metadata value carries ``token``; always True if
    no token is required. Constant time in the token (both sides are hashed first)."""
    if not token:
        return True
    if authorization is None or authorization[: len(SCHEME)].lower() != SCHEME.lower():
        return False
    offered = hashlib.sha256(authorization[len(SCHEME) :].strip().encode()).digest()
    return hmac.compare_digest(offered, hashlib.sha256(token.encode()).digest())


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    """Call metadata that carries ``token`` (none when ``token`` is empty)."""
    return (("authorization", SCHEME + token),) if token else ()
