"""The header-block scan reads what the full HPACK decoder reads, for the fields kept."""

from __future__ import annotations

import hpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from extproc.sidecar.h2 import frames as f
from extproc.sidecar.h2.hpack_scan import scan, wire_names
from extproc.sidecar.h2.stream import ConnectionError_

WANTED = wire_names(["traceparent"])
NAMES = st.sampled_from(["traceparent", "x-user-id", "user-agent", "te", "grpc-timeout", "x-a"])
VALUES = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60)
HEADERS = st.lists(
    st.tuples(NAMES, VALUES, st.booleans()),  # (name, value, never indexed)
    max_size=8,
)
PATHS = st.sampled_from(
    ["/", "/index.html", "/envoy.service.ext_proc.v3.ExternalProcessor/Process"]
)


def encoded(path: str, headers: list[tuple[str, str, bool]], huffman: bool) -> bytes:
    encoder = hpack.Encoder()
    encoder.header_table_size = 0  # what the peer does once it applied our SETTINGS
    encoder.encode([])  # the size update goes into a first, empty block
    pairs = [(":method", "POST"), (":scheme", "http"), (":path", path), *headers]
    return encoder.encode(pairs, huffman=huffman)


@settings(max_examples=300, deadline=None)
@given(path=PATHS, headers=HEADERS, huffman=st.booleans())
def test_scan_agrees_with_the_full_decoder(
    path: str, headers: list[tuple[str, str, bool]], huffman: bool
) -> None:
    block = encoded(path, headers, huffman)
    decoder = hpack.Decoder()
    decoder.header_table_size = 0
    full = decoder.decode(block)
    scanned = scan(block, WANTED, 16_384)
    assert scanned is not None
    got_path, metadata, held, work = scanned
    assert got_path == dict(full)[":path"]
    kept = [(k, v) for k, v in full if k == "traceparent"]
    assert list(metadata) == kept
    assert held == sum(len(k) + len(v) + 32 for k, v in kept)
    assert work >= 1


def test_a_table_size_update_above_zero_is_left_to_the_full_decoder() -> None:
    assert scan(b"\x3f\xe1\x1f\x84", WANTED, 16_384) is None  # size 4096, then :path /


@pytest.mark.parametrize(
    ("block", "code"),
    [
        (b"\x80", f.COMPRESSION_ERROR),  # index 0
        (b"\xbe", f.COMPRESSION_ERROR),  # index 62: the dynamic table is empty
        (b"\x40\x05ab", f.COMPRESSION_ERROR),  # truncated literal name
        (b"\x04\x05/ab", f.COMPRESSION_ERROR),  # truncated value
        (b"\x84\x20", f.COMPRESSION_ERROR),  # size update after a field
        (b"\xff\xff\xff\xff\xff\xff\x0f", f.COMPRESSION_ERROR),  # integer too large
        (b"\x04\x81\xff", f.COMPRESSION_ERROR),  # :path with an invalid Huffman code
        (b"\x00\x01a\x7f\x91\x7f" + bytes(16_400), f.ENHANCE_YOUR_CALM),  # over the list limit
    ],
)
def test_bad_blocks(block: bytes, code: int) -> None:
    with pytest.raises(ConnectionError_) as raised:
        scan(block, WANTED, 16_384)
    assert raised.value.code == code
