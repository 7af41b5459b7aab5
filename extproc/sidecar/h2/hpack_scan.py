"""A header block read for the few fields the sidecar needs, when the table is empty.

With an HPACK dynamic table of size 0 (what we advertise), a block carries no state:
indexed fields can only name the static table, and a literal "with incremental
indexing" is evicted as soon as it is added. So a block can be *scanned*: each field's
lengths are parsed (and checked), but only ``:path`` and the wanted metadata names are
decoded; every other string is skipped without Huffman-decoding it. Envoy sends its
trace context (a unique ``traceparent``) on every ext_proc stream, so no two blocks are
equal and this replaces a full pure-Python decode per stream.

Names, and the paths of the routes, are matched in their wire form: the Huffman code is
canonical, so a string has exactly two encodings (raw and Huffman), both precomputed;
only an unknown path is decoded.

What a scan does not check of a skipped string is its Huffman code (an invalid code or
a padded EOS in a field we ignore is not detected); every length, index and the
block's structure are checked as the full decoder does.
"""

from __future__ import annotations

from collections.abc import Iterable

from hpack.huffman import HuffmanEncoder
from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH
from hpack.huffman_table import decode_huffman
from hpack.table import HeaderTable

from extproc.sidecar.h2 import frames as f
from extproc.sidecar.h2.hex_huffman import decode_hex
from extproc.sidecar.h2.stream import ConnectionError_, Metadata

_STATIC = HeaderTable.STATIC_TABLE  # index i is _STATIC[i - 1]
_ENCODER = HuffmanEncoder(REQUEST_CODES, REQUEST_CODES_LENGTH)
_PATH = ":path"

Scanned = tuple[str, Metadata, int, int]  # :path, metadata, bytes held, work units


WireForms = dict[tuple[bool, bytes], str]  # (Huffman?, bytes on the wire) -> text


def wire_forms(texts: Iterable[str]) -> WireForms:
    """Both wire forms (raw, Huffman) of each text."""
    out = {}
    for text in texts:
        raw = text.encode("latin-1")
        out[(False, raw)] = text
        out[(True, _ENCODER.encode(raw))] = text
    return out


def wire_names(names: Iterable[str]) -> WireForms:
    """Both wire forms of each name, and of ``:path``."""
    return wire_forms((*names, _PATH))


def _error(what: str) -> ConnectionError_:
    return ConnectionError_(f.COMPRESSION_ERROR, f"bad header block: {what}")


def _integer(block: bytes, at: int, prefix: int) -> tuple[int, int]:
    """An HPACK integer with a ``prefix``-bit prefix at ``at``: (value, next offset)."""
    mask = (1 << prefix) - 1
    value = block[at] & mask
    at += 1
    return _more(block, at, value) if value == mask else (value, at)


def _more(block: bytes, at: int, value: int) -> tuple[int, int]:
    """The continuation bytes of an integer whose prefix was full (``value`` so far)."""
    shift = 0
    while True:
        if at >= len(block) or shift > 28:
            raise _error("integer truncated or too large")
        byte = block[at]
        at += 1
        value += (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, at


def _string(block: bytes, at: int) -> tuple[bool, int, int]:
    """(Huffman?, start, end) of the string literal at ``at``."""
    if at >= len(block):
        raise _error("string truncated")
    size = block[at]
    length = size & 0x7F
    at += 1
    if length == 0x7F:
        length, at = _more(block, at, length)
    stop = at + length
    if stop > len(block):
        raise _error("string truncated")
    return size > 0x7F, at, stop


def text(block: bytes, huffman: bool, start: int, end: int) -> str:
    """The string literal ``block[start:end]``, Huffman-decoded if ``huffman``."""
    data = block[start:end]
    if not huffman:
        return data.decode("latin-1")
    text = decode_hex(data)  # a traceparent: two characters per table lookup
    if text is not None:
        return text
    try:
        return decode_huffman(data).decode("latin-1")
    except Exception:
        raise _error("invalid Huffman code") from None


def scan(
    block: bytes, wanted: WireForms, max_list: int, paths: WireForms | None = None
) -> Scanned | None:
    """Scan ``block`` (the table is empty); None if it resizes the table above 0.

    ``wanted``: the names to keep (``wire_names``); ``paths``: known ``:path`` values.
    """
    known = paths or {}
    path = ""
    metadata: list[tuple[str, str]] = []
    held = listed = 0
    at, end = 0, len(block)
    fields = 0
    statics = len(_STATIC)
    while at < end:
        first = block[at]
        at += 1
        if first & 0x80:  # indexed field: the static table only
            index = first & 0x7F
            if index == 0x7F:
                index, at = _more(block, at, index)
            if not 1 <= index <= statics:
                raise _error(f"index {index} with an empty dynamic table")
            static_name, static_value = _STATIC[index - 1]
            listed += len(static_name) + len(static_value) + 32
            if index == 4 or index == 5:  # ":path" "/" and ":path" "/index.html"
                path = static_value.decode("latin-1")
            fields += 1
            continue
        if first & 0xE0 == 0x20:  # dynamic table size update
            size = first & 0x1F
            if size == 0x1F:
                size, at = _more(block, at, size)
            if fields:
                raise _error("table size update after a field")
            if size:
                return None
            continue
        # A literal: with indexing (6-bit name index), without or never indexed (4-bit).
        mask = 0x3F if first & 0x40 else 0x0F
        index = first & mask
        if index == mask:
            index, at = _more(block, at, index)
        if index:
            if index > statics:
                raise _error(f"name index {index} with an empty dynamic table")
            key = _PATH if index == 4 or index == 5 else None
            listed += len(_STATIC[index - 1][0])
        else:
            huffman, start, at = _string(block, at)
            key = wanted.get((huffman, block[start:at]))
            listed += (at - start) * 8 // 5 if huffman else at - start
        huffman, start, at = _string(block, at)
        listed += ((at - start) * 8 // 5 if huffman else at - start) + 32
        if key is not None:
            if key == _PATH:
                path = known.get((huffman, block[start:at])) or text(block, huffman, start, at)
            else:
                value = text(block, huffman, start, at)
                metadata.append((key, value))
                held += len(key) + len(value) + 32
        fields += 1
        if listed > max_list:
            raise ConnectionError_(f.ENHANCE_YOUR_CALM, "header list over the limit")
    if listed > max_list:
        raise ConnectionError_(f.ENHANCE_YOUR_CALM, "header list over the limit")
    return path, tuple(metadata), held, 1 + end // 256
