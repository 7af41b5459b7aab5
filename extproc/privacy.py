"""Keyed hashing of user ids: the only form in which an id may leave the process.

Traces, logs and metrics carry ``context_id(key)`` = the first 16 hex digits of
HMAC-SHA256(secret, key). With ``EXTPROC_ID_HASH_KEY`` set (same on every
replica) an operator who knows a user id can find that user's decisions; unset,
a random per-process secret makes the hashes unlinkable across restarts.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets

ENV = "EXTPROC_ID_HASH_KEY"
log = logging.getLogger("extproc.privacy")


class IdHasher:
    """``hash(key)`` -> 16 hex digits; never returns or logs the raw key."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    @classmethod
    def from_env(cls) -> IdHasher:
        value = os.environ.get(ENV, "")
        if value:
            return cls(value.encode())
        log.info("%s is not set: user id hashes are unlinkable across restarts", ENV)
        return cls(secrets.token_bytes(32))

    def hash(self, key: str) -> str:
        raw = key.encode("utf-8", "surrogateescape")
        return hmac.new(self._secret, raw, hashlib.sha256).hexdigest()[:16]
