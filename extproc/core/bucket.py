"""Sticky bucketing: a 64-bit xxHash of ``salt:key`` mapped to one of BUCKETS.

The mapping is part of the product's contract: changing it moves users between
cohorts. tests/unit/test_bucket_vectors.py pins it against a vector file.
"""

from __future__ import annotations

import xxhash

#: Number of buckets; a share is expressed in buckets, so 1 bucket = 0.01 %.
BUCKETS = 10_000

_xxh64 = xxhash.xxh64_intdigest


def salt_prefix(salt: str) -> bytes:
    """The bytes that precede every key for one salt (``salt + ":"``)."""
    return salt.encode("utf-8") + b":"


def bucket_of(prefix: bytes, key: bytes) -> int:
    """Bucket in [0, BUCKETS) of ``key`` under the salt whose prefix is given.

    Multiply-shift instead of modulo keeps the mapping uniform and monotone in
    the hash, so the share boundary is one cut through the hash space.
    """
    return (_xxh64(prefix + key) * BUCKETS) >> 64


def in_v2(bucket: int, share_buckets: int) -> bool:
    """True iff a user in ``bucket`` belongs to v2 at ``share_buckets`` (0..BUCKETS).

    Raising the share only adds buckets to v2, so a ramp is monotonic.
    """
    return bucket < share_buckets
