"""XXH64 (seed 0) and the cohort bucket over many keys at once, in numpy uint64 arithmetic.

Bit-exact with ``xxhash.xxh64_intdigest(prefix + key)`` and with
``extproc.core.bucket.bucket_of`` (tests/unit/diff/test_xxh64.py checks both, and the
pinned vectors of tests/fixtures/bucket_vectors.json). One call hashes a block of keys of
one length: every message then has the same stripes, lanes and tail, so each step of the
algorithm is one array operation over the block. numpy's uint64 arithmetic wraps modulo
2**64, which is exactly what XXH64 specifies.

The stripes that lie wholly inside the shared salt prefix are hashed once, as scalars.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from extproc.core.bucket import BUCKETS

U64 = npt.NDArray[np.uint64]
U8 = npt.NDArray[np.uint8]
_MASK = (1 << 64) - 1
P1 = 0x9E3779B185EBCA87
P2 = 0xC2B2AE3D27D4EB4F
P3 = 0x165667B19E3779F9
P4 = 0x85EBCA77C2B2AE63
P5 = 0x27D4EB2F165667C5
_P1, _P2, _P3, _P4, _P5 = (np.uint64(p) for p in (P1, P2, P3, P4, P5))
_SHIFT = {r: (np.uint64(r), np.uint64(64 - r)) for r in (1, 7, 11, 12, 18, 23, 27, 29, 31, 32, 33)}


def _rotl(x: U64, r: int) -> U64:
    left, right = _SHIFT[r]
    out: U64 = (x << left) | (x >> right)
    return out


def _round(acc: U64, lane: U64) -> U64:
    acc = acc + lane * _P2
    return _rotl(acc, 31) * _P1


def _merge(h: U64, acc: U64) -> U64:
    h = h ^ _round(np.zeros_like(acc), acc)
    return h * _P1 + _P4


# Scalar twins for the stripes inside the prefix (Python ints, masked to 64 bits).
def _srotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (64 - r))) & _MASK


def _sround(acc: int, lane: int) -> int:
    return (_srotl((acc + lane * P2) & _MASK, 31) * P1) & _MASK


def xxh64_block(prefix: bytes, keys: U8) -> U64:
    """XXH64 of ``prefix + row`` for every row of ``keys`` (shape (n, K), dtype uint8)."""
    n, width = keys.shape
    total = len(prefix) + width
    done = 0  # bytes of the message consumed by the stripes
    if total >= 32:
        stripes = total // 32
        accs = [(P1 + P2) & _MASK, P2, 0, (-P1) & _MASK]
        inside = min(len(prefix) // 32, stripes)
        for s in range(inside):
            for j in range(4):
                lane = int.from_bytes(prefix[32 * s + 8 * j : 32 * s + 8 * j + 8], "little")
                accs[j] = _sround(accs[j], lane)
        done = 32 * inside
    lanes = _lanes(prefix[done:], keys)  # (lanes, n), the message from byte ``done`` on
    lane = 0
    if total >= 32:
        v = [np.full(n, a, dtype=np.uint64) for a in accs]
        for _ in range(inside, stripes):
            for j in range(4):
                v[j] = _round(v[j], lanes[lane])
                lane += 1
        h = _rotl(v[0], 1) + _rotl(v[1], 7) + _rotl(v[2], 12) + _rotl(v[3], 18)
        for acc in v:
            h = _merge(h, acc)
        done = 32 * stripes
    else:
        h = np.full(n, P5, dtype=np.uint64)
    h = h + np.uint64(total)
    left = total - done
    while left >= 8:
        h = h ^ _round(np.zeros(n, dtype=np.uint64), lanes[lane])
        h = _rotl(h, 27) * _P1 + _P4
        lane += 1
        left -= 8
    tail_bytes = _tail_bytes(prefix, keys, total - left)
    pos = 0
    if left >= 4:
        word = _little_endian(tail_bytes[:, 0:4])
        h = h ^ (word * _P1)
        h = _rotl(h, 23) * _P2 + _P3
        pos = 4
    while pos < left:
        h = h ^ (tail_bytes[:, pos].astype(np.uint64) * _P5)
        h = _rotl(h, 11) * _P1
        pos += 1
    h = h ^ (h >> _SHIFT[33][0])
    h = h * _P2
    h = h ^ (h >> _SHIFT[29][0])
    h = h * _P3
    out: U64 = h ^ (h >> _SHIFT[32][0])
    return out


def buckets_block(prefix: bytes, keys: U8) -> npt.NDArray[np.int64]:
    """``bucket_of(prefix, row)`` for every row: (xxh64 * BUCKETS) >> 64, exactly.

    The 128-bit product's high word from 32-bit halves: with h = hi * 2**32 + lo,
    (h * B) >> 64 == (hi * B + ((lo * B) >> 32)) >> 32, and no term overflows 64 bits.
    """
    h = xxh64_block(prefix, keys)
    b = np.uint64(BUCKETS)
    hi = h >> np.uint64(32)
    lo = h & np.uint64(0xFFFFFFFF)
    bucket = (hi * b + ((lo * b) >> np.uint64(32))) >> np.uint64(32)
    return bucket.astype(np.int64)


def _lanes(head: bytes, keys: U8) -> U64:
    """The full 8-byte little-endian lanes of ``head + row``, transposed to (lanes, n)."""
    n, width = keys.shape
    size = len(head) + width
    count = size // 8
    if count == 0:
        return np.zeros((0, n), dtype=np.uint64)
    message = np.empty((n, count * 8), dtype=np.uint8)
    cut = min(len(head), count * 8)
    message[:, :cut] = np.frombuffer(head[:cut], dtype=np.uint8)
    message[:, cut:] = keys[:, : count * 8 - cut]
    lanes: U64 = message.view("<u8").T.astype(np.uint64, order="C")
    return lanes


def _tail_bytes(prefix: bytes, keys: U8, start: int) -> U8:
    """Bytes ``start..`` of every message ``prefix + row`` (the part after the lanes)."""
    n = keys.shape[0]
    head = prefix[start:] if start < len(prefix) else b""
    from_key = max(0, start - len(prefix))
    tail = keys[:, from_key:]
    if head:
        tail = np.concatenate(
            [np.broadcast_to(np.frombuffer(head, np.uint8), (n, len(head))), tail], axis=1
        )
    return tail


def _little_endian(four: U8) -> U64:
    out = np.zeros(four.shape[0], dtype=np.uint64)
    for i in range(four.shape[1]):
        out |= four[:, i].astype(np.uint64) << np.uint64(8 * i)
    return out
