"""Huffman-coded header values made of hex digits and dashes, decoded two symbols at a time.

A ``traceparent`` (``00-<32 hex>-<16 hex>-<2 hex>``) is what the sidecar decodes on every
ext_proc stream when its own tracing is on. hpack's decoder walks the string a nibble at
a time in Python (~6-10 us for Envoy's 55 characters, the largest single cost of a traced
stream's header block). In HPACK's Huffman code (RFC 7541 Appendix B) the characters
``0-9 a-f -`` have codes of 5 or 6 bits, so any 12 bits starting at a symbol boundary hold
exactly two of them: one table lookup per two characters (a 4,096-entry list).

``decode_hex`` accepts only what the full decoder accepts (a run of these codes, then fewer
than 8 padding bits that are all ones) and returns the same text; anything else, including
a value with other characters, returns None so that the caller uses the full decoder (which
decodes it, or rejects an invalid code).
"""

from __future__ import annotations

from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH

ALPHABET = "0123456789abcdef-"

Entry = tuple[str, int] | None  # (characters, bits they take)


def _codes() -> dict[str, tuple[int, int]]:
    return {c: (REQUEST_CODES[ord(c)], REQUEST_CODES_LENGTH[ord(c)]) for c in ALPHABET}


def _pairs() -> list[Entry]:
    """Every 12-bit window that starts with two alphabet codes -> (the two characters, bits)."""
    table: list[Entry] = [None] * 4096
    codes = _codes()
    for first, (code1, len1) in codes.items():
        for second, (code2, len2) in codes.items():
            used = len1 + len2
            head = (code1 << len2 | code2) << (12 - used)
            for tail in range(1 << (12 - used)):
                table[head | tail] = (first + second, used)
    return table


def _singles() -> list[Entry]:
    """Every 6-bit window that starts with one alphabet code -> (the character, bits)."""
    table: list[Entry] = [None] * 64
    for char, (code, length) in _codes().items():
        head = code << (6 - length)
        for tail in range(1 << (6 - length)):
            table[head | tail] = (char, length)
    return table


_PAIRS = _pairs()
_SINGLES = _singles()


def decode_hex(data: bytes) -> str | None:
    """The text of Huffman-coded ``data`` if it is made of ``0-9 a-f -`` only, else None."""
    value = int.from_bytes(data)
    left = len(data) * 8  # bits not decoded yet
    out = []
    pairs = _PAIRS
    while left >= 12:
        entry = pairs[(value >> (left - 12)) & 0xFFF]
        if entry is None:  # one symbol and the padding, or another character
            break
        out.append(entry[0])
        left -= entry[1]
    singles = _SINGLES
    while left >= 5:
        window = (value >> (left - 6)) & 0x3F if left >= 6 else (value << 1) & 0x3F
        single = singles[window]
        if single is None or single[1] > left:
            break
        out.append(single[0])
        left -= single[1]
    padding = (1 << left) - 1
    if left >= 8 or value & padding != padding:  # RFC 7541 5.2: < 8 bits, EOS's ones
        return None
    return "".join(out)
