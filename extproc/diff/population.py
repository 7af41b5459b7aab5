"""Who the dry run decides for: users with a key (their id) and targeting attributes.

A population hands out its users in chunks. Users with the same attributes share a
``Group`` (region, device, other headers), so rules are evaluated once per group, not per
user. Keys come as blocks of equal byte length, the shape the vectorized hash wants; a user
with an empty id has no key (the rules' missing-key policy applies).

- :class:`SyntheticPopulation`: ``n`` users ``user-0 .. user-(n-1)``, each in a group drawn
  by a fixed hash of its index (uniform over the catalog's attribute combinations), so a
  user's group never depends on how the population is chunked.
- :class:`FilePopulation`: users read from a CSV file (see ``users_file.py``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]
CHUNK = 1 << 20
LIST_CHUNK = 1 << 17  # users of a list are Python objects per chunk: keep chunks small
SYNTHETIC_PREFIX = "user-"


@dataclass(frozen=True, slots=True)
class Group:
    """The targeting attributes some users share; None = the header is absent."""

    region: str | None = None
    device: str | None = None
    headers: tuple[tuple[str, str], ...] = ()  # other request headers, lower-case names

    def request_headers(self, region_header: str, device_header: str) -> dict[str, str]:
        out = dict(self.headers)
        if self.region is not None:
            out[region_header] = self.region
        if self.device is not None:
            out[device_header] = self.device
        return out


@dataclass(frozen=True, slots=True)
class KeyBlock:
    """Keys of equal byte length: ``keys[i]`` is the key of chunk row ``rows[i]``."""

    rows: I64
    keys: U8  # shape (len(rows), length)
    chars: I64 | None = None  # characters per key when not all ASCII (None: = bytes)


@dataclass(frozen=True, slots=True)
class Chunk:
    """Users ``start .. start + len(group) - 1`` of a population."""

    start: int
    group: I64  # index into the population's groups, one per user
    blocks: tuple[KeyBlock, ...] = field(default=())

    @property
    def size(self) -> int:
        return len(self.group)


class Population(Protocol):
    groups: tuple[Group, ...]
    size: int

    def chunks(self) -> Iterator[Chunk]: ...

    def user(self, index: int) -> tuple[str, int]:
        """The id and group of user ``index``."""
        ...

    def locate(self, ids: set[str]) -> dict[str, int]:
        """The index of each of ``ids`` that is a user of this population."""
        ...


class SyntheticPopulation:
    """``size`` users named ``user-<index>``, spread uniformly over regions x devices x
    header combinations."""

    def __init__(
        self,
        size: int,
        regions: Sequence[str | None],
        devices: Sequence[str | None],
        chunk: int = CHUNK,
        headers: Sequence[tuple[tuple[str, str], ...]] = ((),),
    ) -> None:
        if size < 1:
            raise ValueError("a synthetic population needs at least one user")
        self.size = size
        self.groups = tuple(Group(r, d, h) for r in regions for d in devices for h in headers)
        self._chunk = chunk

    def chunks(self) -> Iterator[Chunk]:
        for start in range(0, self.size, self._chunk):
            index = np.arange(start, min(start + self._chunk, self.size), dtype=np.int64)
            yield Chunk(start, self._group_of(index), tuple(_synthetic_keys(index)))

    def user(self, index: int) -> tuple[str, int]:
        return f"{SYNTHETIC_PREFIX}{index}", int(self._group_of(np.array([index]))[0])

    def locate(self, ids: set[str]) -> dict[str, int]:
        found = {}
        for user_id in ids:
            digits = user_id.removeprefix(SYNTHETIC_PREFIX)
            if digits != user_id and digits.isdigit() and digits.isascii():
                index = int(digits)
                if str(index) == digits and index < self.size:
                    found[user_id] = index
        return found

    def _group_of(self, index: I64) -> I64:
        """A fixed, well-mixed function of the index (splitmix64's finaliser), mapped to a
        group by a multiply-high, like the buckets."""
        z = index.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
        top = z >> np.uint64(40)  # 24 bits
        return ((top * np.uint64(len(self.groups))) >> np.uint64(24)).astype(np.int64)


def _synthetic_keys(index: I64) -> Iterator[KeyBlock]:
    """``user-<index>`` as byte blocks, one block per number of decimal digits."""
    prefix = np.frombuffer(SYNTHETIC_PREFIX.encode(), dtype=np.uint8)
    first, last = int(index[0]), int(index[-1])
    for digits in range(len(str(first)), len(str(last)) + 1):
        low = 0 if digits == 1 else 10 ** (digits - 1)
        rows = np.flatnonzero((index >= low) & (index < 10**digits)).astype(np.int64)
        values = index[rows]
        keys = np.empty((len(rows), len(prefix) + digits), dtype=np.uint8)
        keys[:, : len(prefix)] = prefix
        for p in range(digits):
            keys[:, len(prefix) + p] = values // 10 ** (digits - 1 - p) % 10 + 48
        yield KeyBlock(rows, keys)


class ListPopulation:
    """Users given as (id, group) in memory: a users file, or a test's random users."""

    def __init__(
        self,
        ids: Sequence[str],
        group_of: Sequence[int],
        groups: Sequence[Group],
        chunk: int = LIST_CHUNK,
        index: Mapping[str, int] | None = None,
    ) -> None:
        """``ids`` are unique (empty ones aside); ``index`` (id -> position), if the caller
        has one, saves building it again."""
        self.ids = ids
        self.size = len(ids)
        self.groups = tuple(groups)
        self._group_of = np.asarray(group_of, dtype=np.int64)
        self._chunk = chunk
        self._index = index

    def chunks(self) -> Iterator[Chunk]:
        for start in range(0, self.size, self._chunk):
            ids = self.ids[start : start + self._chunk]
            by_length: dict[int, tuple[list[int], list[bytes], list[int]]] = {}
            for row, user_id in enumerate(ids):
                key = user_id.encode("utf-8", "surrogateescape")
                if key:
                    rows, keys, chars = by_length.setdefault(len(key), ([], [], []))
                    rows.append(row)
                    keys.append(key)
                    chars.append(len(user_id))
            blocks = tuple(
                KeyBlock(
                    np.array(rows, dtype=np.int64),
                    np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(rows), length),
                    None if min(chars) == length else np.array(chars, dtype=np.int64),
                )
                for length, (rows, keys, chars) in sorted(by_length.items())
            )
            yield Chunk(start, self._group_of[start : start + len(ids)], blocks)

    def user(self, index: int) -> tuple[str, int]:
        return self.ids[index], int(self._group_of[index])

    def locate(self, ids: set[str]) -> dict[str, int]:
        if self._index is None:
            self._index = {user_id: i for i, user_id in enumerate(self.ids)}
        return {user_id: self._index[user_id] for user_id in ids if user_id in self._index}
