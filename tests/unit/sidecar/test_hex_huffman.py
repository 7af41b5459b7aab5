"""The two-symbols-per-lookup decoder agrees with hpack's Huffman decoder (hex_huffman)."""

from __future__ import annotations

import hpack
import pytest
from hpack.huffman import HuffmanEncoder
from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH
from hpack.huffman_table import decode_huffman
from hypothesis import given, settings
from hypothesis import strategies as st

from extproc.sidecar.h2.hex_huffman import ALPHABET, decode_hex

ENCODER = HuffmanEncoder(REQUEST_CODES, REQUEST_CODES_LENGTH)


def huffman(text: str) -> bytes:
    return bytes(ENCODER.encode(text.encode("latin-1")))


@settings(max_examples=500, deadline=None)
@given(st.text(ALPHABET, max_size=120))
def test_hex_and_dashes_decode_as_hpack_decodes_them(text: str) -> None:
    data = huffman(text)
    assert decode_hex(data) == text == decode_huffman(data).decode()


@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60))
def test_other_text_is_left_to_the_full_decoder(text: str) -> None:
    decoded = decode_hex(huffman(text))
    if set(text) <= set(ALPHABET):
        assert decoded == text
    else:
        assert decoded is None


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=40))
def test_any_bytes_it_accepts_hpack_accepts_and_decodes_alike(data: bytes) -> None:
    decoded = decode_hex(data)
    if decoded is None:
        return
    assert decode_huffman(data).decode() == decoded


def test_a_traceparent() -> None:
    value = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert decode_hex(huffman(value)) == value


@pytest.mark.parametrize(
    "data",
    [
        huffman("0a") + b"\xff",  # 8 bits of padding or more
        bytes([huffman("a")[0] & 0xFE]),  # padding that is not all ones
        b"\xff\xff\xff\xff",  # the EOS code
    ],
)
def test_bad_padding_or_eos_is_refused(data: bytes) -> None:
    assert decode_hex(data) is None
    with pytest.raises(hpack.HPACKDecodingError):
        decode_huffman(data)
