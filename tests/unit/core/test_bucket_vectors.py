"""Pin the hash: any change to bucketing would silently move real users."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import xxhash

from extproc.core.bucket import BUCKETS, bucket_of, in_v2, salt_prefix

VECTORS = json.loads(
    (Path(__file__).resolve().parents[2] / "fixtures/bucket_vectors.json").read_text("utf-8")
)


def test_xxh64_is_the_reference_algorithm() -> None:
    # Published XXH64 test vector: empty input, seed 0.
    assert xxhash.xxh64_intdigest(b"") == 0xEF46DB3751D8E999


def test_resolution_is_at_least_ten_thousand_buckets() -> None:
    assert BUCKETS >= 10_000 and VECTORS["buckets"] == BUCKETS


@pytest.mark.parametrize("case", VECTORS["vectors"], ids=lambda c: f"{c['salt']}:{c['key'][:12]}")
def test_pinned_vector(case: dict[str, object]) -> None:
    salt, key = str(case["salt"]), str(case["key"])
    data = salt.encode() + b":" + key.encode()
    assert f"{xxhash.xxh64_intdigest(data):016x}" == case["xxh64"]
    assert bucket_of(salt_prefix(salt), key.encode()) == case["bucket"]


def test_same_buckets_in_another_process_with_another_hash_seed() -> None:
    code = (
        "import json,sys\n"
        "from extproc.core.bucket import bucket_of, salt_prefix\n"
        "cases=json.load(sys.stdin)\n"
        "print(json.dumps([bucket_of(salt_prefix(c['salt']), c['key'].encode()) for c in cases]))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code],
        input=json.dumps(VECTORS["vectors"]),
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert json.loads(out.stdout) == [c["bucket"] for c in VECTORS["vectors"]]


def test_share_boundary() -> None:
    assert in_v2(0, 1) and not in_v2(1, 1)
    assert not in_v2(0, 0) and in_v2(BUCKETS - 1, BUCKETS)
