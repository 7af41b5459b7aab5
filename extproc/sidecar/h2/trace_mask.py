"""Header blocks that differ only in Envoy's ``traceparent`` share one cache entry.

With Envoy's tracer on (at any sampling), every ext_proc stream carries a fresh
``traceparent``, so no two header blocks are equal and the block cache never hits. A
block is split around that field: ``prefix + field + suffix``, and the pair (prefix,
suffix) is the cache key. When the sidecar reads ``traceparent`` (its own tracing on),
the entry holds the rest of the metadata and where the field goes in it, and only the
field's value is decoded per block (``value``: hex_huffman's two characters per lookup).

Why that is sound with an empty HPACK table (no state between fields): an entry is stored
only after the whole block was scanned *and* the prefix and the suffix were each scanned on
their own, so the prefix ends on a field boundary and the suffix is a run of complete
fields. A later block with the same prefix and suffix whose middle is one complete literal
``traceparent`` field (checked: representation byte, name, value length) therefore decodes
to the same ``:path`` and kept metadata. Its decoded size differs only by the value, which
may not be larger than the stored one, so the header-list limit holds too. As with the scan,
the skipped value's Huffman code is not checked; a value that is read is decoded and
checked as the scan checks it.
"""

from __future__ import annotations

from hpack.huffman import HuffmanEncoder
from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH

from extproc.sidecar.h2.hpack_scan import WireForms, scan, text
from extproc.sidecar.h2.stream import ConnectionError_, Metadata

NAME = "traceparent"
#: Literal field with a new name: with incremental indexing, without, never indexed.
_LITERAL_NEW_NAME = (0x40, 0x00, 0x10)
#: A longer value is not masked (Envoy's is 55 characters).
MAX_VALUE = 128

_RAW = NAME.encode("latin-1")
_HUFFMAN = HuffmanEncoder(REQUEST_CODES, REQUEST_CODES_LENGTH).encode(_RAW)
#: The name as a string literal on the wire (length byte, then the bytes), Huffman first.
_MARKERS = (bytes([0x80 | len(_HUFFMAN)]) + _HUFFMAN, bytes([len(_RAW)]) + _RAW)

Key = tuple[bytes, bytes]  # (prefix, suffix)
#: :path, metadata without the field, held, listed size of the field, the field's index
#: in the metadata (when read; -1 when not)
Entry = tuple[str, Metadata, int, int, int]
Split = tuple[Key, int, int, int]  # key, listed size of the field, value start, value end


def split(block: bytes) -> Split | None:
    """(key, listed size of the field's name and value, where its value is) if ``block``
    holds a literal ``traceparent`` field of a value up to MAX_VALUE bytes on the wire;
    else None. Checks only that field. The value is Huffman-coded when
    ``block[start - 1] & 0x80``."""
    for marker in _MARKERS:
        at = block.find(marker)
        if at < 1 or block[at - 1] not in _LITERAL_NEW_NAME:
            continue
        at += len(marker)
        if at >= len(block):
            return None
        size = block[at]
        length = size & 0x7F
        stop = at + 1 + length
        if length > MAX_VALUE or stop > len(block):  # 0x7F (a longer integer) included
            return None
        name = len(marker) - 1
        listed = (name * 8 // 5 if marker[0] & 0x80 else name) + (
            length * 8 // 5 if size & 0x80 else length
        )
        return (block[: at - len(marker) - 1], block[stop:]), listed, at + 1, stop
    return None


def validated(key: Key, wanted: WireForms, max_list: int) -> bool:
    """Whether ``key``'s prefix and suffix are each complete runs of fields (call it only
    after the whole block scanned without error)."""
    prefix, suffix = key
    try:
        return scan(prefix, wanted, max_list) is not None and (
            scan(suffix, wanted, max_list) is not None
        )
    except ConnectionError_:
        return False


def value(block: bytes, start: int, end: int) -> str:
    """The field's value (``split``'s start and end); ConnectionError_ if its Huffman code
    is invalid."""
    return text(block, bool(block[start - 1] & 0x80), start, end)
