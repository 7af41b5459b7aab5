"""The context id is HMAC-SHA256 (RFC 2104) of the raw key, truncated: the precomputed-state
implementation must give exactly what the standard library's hmac gives."""

from __future__ import annotations

import hashlib
import hmac

from hypothesis import given, settings
from hypothesis import strategies as st

from extproc.telemetry.privacy import HASH_DIGITS, IdHasher


@settings(max_examples=300, deadline=None)
@given(secret=st.binary(max_size=200), key=st.text(max_size=300))
def test_context_id_is_truncated_hmac_sha256(secret: bytes, key: str) -> None:
    raw = key.encode("utf-8", "surrogateescape")
    expected = hmac.new(secret, raw, hashlib.sha256).hexdigest()[:HASH_DIGITS]
    assert IdHasher(secret).hash(key) == expected


def test_non_utf8_key_hashes_its_exact_bytes() -> None:
    key = b"user-\xff".decode("utf-8", "surrogateescape")
    expected = hmac.new(b"s", b"user-\xff", hashlib.sha256).hexdigest()[:HASH_DIGITS]
    assert IdHasher(b"s").hash(key) == expected


def test_the_same_hasher_is_stable_and_different_secrets_differ() -> None:
    a, b = IdHasher(b"one"), IdHasher(b"two")
    assert a.hash("alice") == a.hash("alice") and len(a.hash("alice")) == HASH_DIGITS
    assert a.hash("alice") != b.hash("alice") and a.hash("alice") != a.hash("bob")
