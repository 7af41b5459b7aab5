"""Request header blocks to (``:path``, metadata), within the limits we advertise.

We advertise SETTINGS_HEADER_TABLE_SIZE 0. Until the peer acknowledges that, it
may still index into the default 4,096-byte table (RFC 9113 6.5.3); once it has,
``settings_acked`` lowers the decoder's allowed table size to 0, so the next
block must shrink the table (hpack checks this after every block) and no block
can refer to a table entry again. The decoded size of one block is capped at
``max_header_list`` (what we advertise as SETTINGS_MAX_HEADER_LIST_SIZE), so a
1-byte reference cannot expand without bound.

With a zero-size table before and after, a block carries no HPACK state and equal
bytes decode equally: small blocks are cached (bounded in count and size).
"""

from __future__ import annotations

from collections.abc import Iterable

import hpack

from extproc.sidecar.h2 import frames as f
from extproc.sidecar.h2 import trace_mask
from extproc.sidecar.h2.hpack_scan import scan, wire_forms, wire_names
from extproc.sidecar.h2.stream import ConnectionError_, Metadata

#: Cache: blocks up to CACHED_BLOCK bytes decoding to at most CACHED_DECODED, at most
#: CACHE_ENTRIES of them (64 x 5 KiB per connection).
CACHED_BLOCK = 1024
CACHED_DECODED = 4096
CACHE_ENTRIES = 64

Decoded = tuple[str, Metadata, int]  # (:path, metadata, bytes it holds)


class HeaderDecoder:
    """``metadata``: the names a method may need (None: all). With a set of names and an
    empty table, blocks are scanned (hpack_scan) instead of decoded in full."""

    __slots__ = (
        "_cache",
        "_decoder",
        "_masked",
        "_max",
        "_names",
        "_paths",
        "_reads_trace",
        "_wanted",
        "work",
    )

    def __init__(
        self,
        max_header_list: int,
        metadata: Iterable[str] | None = None,
        paths: Iterable[str] = (),
    ) -> None:
        self._decoder = hpack.Decoder(max_header_list_size=max_header_list)
        self._max = max_header_list
        self._names = None if metadata is None else frozenset(metadata)
        self._wanted = None if metadata is None else wire_names(metadata)
        self._paths = wire_forms(paths)  # routes: recognised on the wire, not decoded
        self._cache: dict[bytes, Decoded] = {}
        #: Blocks that differ only in ``traceparent`` share an entry (trace_mask); when it
        #: is read, only its value is decoded per block.
        masking = self._names is not None
        self._masked: dict[trace_mask.Key, trace_mask.Entry] | None = {} if masking else None
        self._reads_trace = masking and trace_mask.NAME in (self._names or ())
        #: Work units the last ``decode`` cost (0 from the cache): the connection's
        #: budget per loop pass counts them, so big decodes yield to other peers sooner.
        self.work = 0

    def settings_acked(self) -> None:
        """The peer applied our SETTINGS: from now on the table size must be 0."""
        self._decoder.max_allowed_table_size = 0

    def decode(self, block: bytes) -> Decoded:
        """Decode one complete block; raise ConnectionError_ when it is invalid."""
        stateless = self._decoder.header_table_size == 0
        if stateless:
            cached = self._cache.get(block)
            if cached is not None:
                self.work = 0
                return cached
            if self._wanted is not None:
                masked = self._masked
                split = trace_mask.split(block) if masked is not None else None
                if split is not None and masked is not None:
                    entry = masked.get(split[0])
                    if entry is not None and split[1] <= entry[3]:
                        self.work = 1
                        if entry[4] < 0:
                            return entry[0], entry[1], entry[2]
                        return _with_trace(entry, trace_mask.value(block, split[2], split[3]))
                scanned = scan(block, self._wanted, self._max, self._paths)
                if scanned is not None:
                    path, kept, held, self.work = scanned
                    # A block kept under its (prefix, suffix) is not kept whole as well:
                    # with a unique traceparent it would never be seen again.
                    if (
                        split is None
                        or masked is None
                        or not self._remember_masked(masked, split, (path, kept, held))
                    ):
                        self._remember(block, (path, kept, held), held)
                    return path, kept, held
        try:
            headers = self._decoder.decode(block, raw=True)
        except hpack.OversizedHeaderListError:
            raise ConnectionError_(f.ENHANCE_YOUR_CALM, "header list over the limit") from None
        except hpack.HPACKError as exc:
            raise ConnectionError_(f.COMPRESSION_ERROR, f"bad header block: {exc}") from None
        path = ""
        metadata = []
        size = decoded = 0
        names = self._names
        for name, value in headers:
            decoded += len(name) + len(value)
            key, text = name.decode("latin-1"), value.decode("latin-1")
            if key == ":path":
                path = text
            elif not key.startswith(":") and (names is None or key in names):
                metadata.append((key, text))
                size += len(key) + len(text) + 32  # RFC 7541's accounting per field
        self.work = 2 + decoded // 256
        result = (path, tuple(metadata), size)
        if stateless and self._decoder.header_table_size == 0:
            self._remember(block, result, decoded)
        return result

    def _remember_masked(
        self,
        masked: dict[trace_mask.Key, trace_mask.Entry],
        split: trace_mask.Split,
        result: Decoded,
    ) -> bool:
        """Keep ``result`` under the block's (prefix, suffix) once both are shown to be
        runs of complete fields (trace_mask); the block itself scanned without error.
        False if it is not kept."""
        key, listed = split[0], split[1]
        known = masked.get(key)
        if known is not None:  # scanned for a longer value: it may be that long from now on
            masked[key] = (*known[:3], max(listed, known[3]), known[4])
            return True
        if len(key[0]) + len(key[1]) > CACHED_BLOCK:
            return False
        path, metadata, held = result
        at = -1
        if self._reads_trace:  # the one field named traceparent is the one split around
            found = [i for i, (name, _) in enumerate(metadata) if name == trace_mask.NAME]
            if len(found) != 1:
                return False
            at = found[0]
            name, value = metadata[at]
            held -= len(name) + len(value) + 32
            metadata = metadata[:at] + metadata[at + 1 :]
        wanted = self._wanted
        if wanted is None or not trace_mask.validated(key, wanted, self._max):
            return False
        self.work *= 3  # the prefix and the suffix were scanned too
        if len(masked) >= CACHE_ENTRIES:
            masked.clear()
        masked[key] = (path, metadata, held, listed, at)
        return True

    def _remember(self, block: bytes, result: Decoded, decoded: int) -> None:
        if len(block) <= CACHED_BLOCK and decoded <= CACHED_DECODED:
            cache = self._cache
            if len(cache) >= CACHE_ENTRIES:
                cache.clear()  # cheap and bounded; a steady working set refills at once
            cache[block] = result


def _with_trace(entry: trace_mask.Entry, value: str) -> Decoded:
    """A masked entry's result with the block's own traceparent put back in its place."""
    path, metadata, held, _listed, at = entry
    field = ((trace_mask.NAME, value),)
    held += len(trace_mask.NAME) + len(value) + 32
    return path, metadata[:at] + field + metadata[at:], held
