"""The vectorized XXH64 is bit-exact with the xxhash package and with the core's buckets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st

from extproc.core.bucket import bucket_of, salt_prefix
from extproc.diff.xxh64 import buckets_block, xxh64_block

VECTORS = json.loads(
    (Path(__file__).resolve().parents[2] / "fixtures/bucket_vectors.json").read_text("utf-8")
)


def block(keys: list[bytes]) -> np.ndarray:
    width = len(keys[0])
    return np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), width)


@settings(max_examples=300, deadline=None)
@given(
    prefix=st.binary(max_size=100),
    width=st.integers(0, 100),
    data=st.data(),
)
def test_every_length_matches_xxhash(prefix: bytes, width: int, data: st.DataObject) -> None:
    """Every message length 0..200 crosses each branch: stripes in the prefix, stripes
    across it, 8-byte lanes, the 4-byte word and single bytes."""
    keys = data.draw(st.lists(st.binary(min_size=width, max_size=width), min_size=1, max_size=6))
    got = xxh64_block(prefix, block(keys))
    assert [int(h) for h in got] == [xxhash.xxh64_intdigest(prefix + k) for k in keys]
    assert [int(b) for b in buckets_block(prefix, block(keys))] == [
        bucket_of(prefix, k) for k in keys
    ]


def test_the_empty_message_is_the_published_vector() -> None:
    assert int(xxh64_block(b"", np.zeros((1, 0), dtype=np.uint8))[0]) == 0xEF46DB3751D8E999


def test_the_pinned_bucket_vectors() -> None:
    for case in VECTORS["vectors"]:
        key = case["key"].encode()
        prefix = salt_prefix(case["salt"])
        assert f"{int(xxh64_block(prefix, block([key]))[0]):016x}" == case["xxh64"]
        assert int(buckets_block(prefix, block([key]))[0]) == case["bucket"]


def test_hashes_near_the_top_of_the_range_map_to_the_last_buckets() -> None:
    """The multiply-high from 32-bit halves is exact where rounding would show: find keys
    whose hash is above 2**64 - 2**52 and compare with the core's 128-bit product."""
    keys = [f"k{i:07d}".encode() for i in range(200_000)]
    hashes = xxh64_block(b"s:", block(keys))
    top = [keys[i] for i in np.flatnonzero(hashes > np.uint64(2**64 - 2**52))]
    assert top
    assert [int(b) for b in buckets_block(b"s:", block(top))] == [bucket_of(b"s:", k) for k in top]
