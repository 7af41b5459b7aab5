"""The webhook signature: HMAC-SHA256 over a timestamp and the exact body bytes.

Header (one line; the hex digest is 64 characters)::

    X-TTS-Canary-Signature: t=1765046400,v1=5257a869e7ec...e108d8bd

``v1`` is the lower-case hex HMAC-SHA256, keyed with the shared secret, of the bytes
``<t>.<body>`` (the decimal timestamp, a full stop, then the request body as sent). A
receiver recomputes it, compares in constant time, and refuses a ``t`` more than
``tolerance`` seconds from its own clock, so that a captured request cannot be replayed
later; within the tolerance it deduplicates on ``X-TTS-Canary-Delivery`` (the event id).
"""

from __future__ import annotations

import hashlib
import hmac

HEADER = "X-TTS-Canary-Signature"
DEFAULT_TOLERANCE = 300.0  # seconds


def sign(key: bytes, timestamp: int, body: bytes) -> str:
    """The header value for ``body`` sent at ``timestamp`` (unix seconds)."""
    mac = hmac.new(key, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(
    key: bytes, header: str, body: bytes, now: float, tolerance: float = DEFAULT_TOLERANCE
) -> bool:
    """True iff ``header`` signs ``body`` with ``key`` and its time is within ``tolerance``
    of ``now``. Malformed headers are simply false."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(fields["t"])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance:
        return False
    expected = sign(key, timestamp, body).split(",v1=", 1)[1]
    return hmac.compare_digest(expected, fields.get("v1", ""))
