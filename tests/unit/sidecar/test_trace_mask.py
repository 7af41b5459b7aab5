"""Blocks that differ only in an unread traceparent share a cache entry, and still decode
as the full HPACK decoder decodes them (trace_mask)."""

from __future__ import annotations

from typing import Any

import hpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from extproc.sidecar.h2 import frames as f
from extproc.sidecar.h2 import header_decoder
from extproc.sidecar.h2.header_decoder import HeaderDecoder
from extproc.sidecar.h2.stream import ConnectionError_

PATH = "/envoy.service.ext_proc.v3.ExternalProcessor/Process"
READ = ["x-user-id"]  # what the sidecar reads with its tracing off: not traceparent
READ_TRACE = ["x-user-id", "traceparent"]  # with its tracing on
NAMES = st.sampled_from(["x-user-id", "user-agent", "te", "grpc-timeout", "x-a"])
VALUES = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
OTHERS = st.lists(st.tuples(NAMES, VALUES), max_size=5)
TRACEPARENT = st.text("0123456789abcdef-", min_size=1, max_size=60)


def encoder() -> hpack.Encoder:
    enc = hpack.Encoder()
    enc.header_table_size = 0  # what the peer does once it applied our SETTINGS
    return enc


def block(
    before: list[tuple[str, str]], trace: str, after: list[tuple[str, str]], huffman: bool
) -> bytes:
    pairs = [(":method", "POST"), (":path", PATH), *before, ("traceparent", trace), *after]
    return encoder().encode(pairs, huffman=huffman)


def fresh_decoder(metadata: list[str] = READ, limit: int = 16_384) -> HeaderDecoder:
    decoder = HeaderDecoder(limit, metadata, [PATH])
    decoder.decode(encoder().encode([]))  # the table size update to 0
    return decoder


def expected(data: bytes, read: list[str]) -> tuple[str, tuple[tuple[str, str], ...]]:
    raw = hpack.Decoder().decode(data, raw=True)
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in raw]
    return dict(headers)[":path"], tuple((k, v) for k, v in headers if k in read)


@settings(max_examples=300, deadline=None)
@given(
    before=OTHERS,
    after=OTHERS,
    traces=st.lists(TRACEPARENT, min_size=2, max_size=4),
    huffman=st.booleans(),
    read=st.sampled_from([READ, READ_TRACE, ["traceparent"], ["traceparent", "x-a", "te"]]),
)
def test_blocks_differing_in_the_traceparent_decode_as_the_full_decoder(
    before: list[tuple[str, str]],
    after: list[tuple[str, str]],
    traces: list[str],
    huffman: bool,
    read: list[str],
) -> None:
    decoder = fresh_decoder(read)
    for trace in traces:
        data = block(before, trace, after, huffman)
        path, metadata, held = decoder.decode(data)
        assert (path, metadata) == expected(data, read)
        assert held == sum(len(k) + len(v) + 32 for k, v in metadata)


def count_scans(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One entry per header block the decoder scans in full."""
    scans: list[int] = []
    real_scan = header_decoder.scan

    def counted(*args: Any, **kwargs: Any) -> Any:
        scans.append(1)
        return real_scan(*args, **kwargs)

    monkeypatch.setattr(header_decoder, "scan", counted)
    return scans


def test_the_second_block_comes_from_the_masked_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    scans = count_scans(monkeypatch)
    decoder = fresh_decoder()
    first = block([("x-user-id", "u1")], "00-" + "1" * 32 + "-" + "2" * 16 + "-01", [], True)
    # Digits of the same Huffman code length: the value is no longer on the wire.
    second = block([("x-user-id", "u1")], "00-" + "2" * 32 + "-" + "0" * 16 + "-01", [], True)
    assert decoder.decode(first) == (PATH, (("x-user-id", "u1"),), 9 + 2 + 32)
    assert scans == [1]
    assert decoder.decode(second) == (PATH, (("x-user-id", "u1"),), 9 + 2 + 32)
    assert scans == [1]  # served by prefix and suffix, not scanned
    other_user = block([("x-user-id", "u2")], "00-" + "5" * 32 + "-" + "6" * 16 + "-01", [], True)
    assert decoder.decode(other_user)[1] == (("x-user-id", "u2"),)
    assert scans == [1, 1]
    longer = block([("x-user-id", "u1")], "00-" + "3" * 32 + "-" + "4" * 16 + "-01", [], True)
    assert decoder.decode(longer)[1] == (("x-user-id", "u1"),)
    assert scans == [1, 1, 1]  # a longer value on the wire: scanned (the limit is checked)
    as_long = block([("x-user-id", "u1")], "00-" + "4" * 32 + "-" + "3" * 16 + "-01", [], True)
    assert decoder.decode(as_long)[1] == (("x-user-id", "u1"),)
    assert scans == [1, 1, 1]  # the entry now allows values that long


def test_a_decoy_name_inside_another_value_changes_nothing() -> None:
    decoder = fresh_decoder()
    for n in range(3):  # "traceparent" raw inside x-a's raw value, then the real field
        data = block([("x-a", f"\x0btraceparent{n}")], f"00-{n}", [("x-user-id", f"u{n}")], False)
        path, metadata, _held = decoder.decode(data)
        assert (path, metadata) == expected(data, READ)


def test_a_name_found_inside_a_read_value_is_not_taken_for_a_field() -> None:
    decoder = fresh_decoder()
    for value in ("abc", "xyz"):  # "@" "\x0btraceparent" "\x03abc": looks like a field
        data = encoder().encode(
            [(":path", PATH), ("x-user-id", f"@\x0btraceparent\x03{value}!"), ("te", "x")],
            huffman=False,
        )
        path, metadata, _held = decoder.decode(data)
        assert (path, metadata) == expected(data, READ)
        assert metadata == (("x-user-id", f"@\x0btraceparent\x03{value}!"),)


def test_a_longer_value_is_scanned_again_and_the_limit_still_holds() -> None:
    def raw(trace: str) -> bytes:
        return encoder().encode(
            [(":method", "POST"), (":path", PATH), ("traceparent", trace)], huffman=False
        )

    # Listed size (RFC 7541): 43 for :method, 5 + 52 + 32 for :path, 11 + value + 32.
    decoder = fresh_decoder(limit=175 + 15)
    assert decoder.decode(raw("a" * 10))[0] == PATH
    assert decoder.decode(raw("b" * 10))[0] == PATH  # from the masked entry
    assert decoder.decode(raw("c" * 15))[0] == PATH  # longer: scanned, at the limit
    with pytest.raises(ConnectionError_) as raised:
        decoder.decode(raw("d" * 16))
    assert raised.value.code == f.ENHANCE_YOUR_CALM


def test_a_truncated_traceparent_is_an_error() -> None:
    decoder = fresh_decoder()
    good = block([], "00-abc", [("x-user-id", "u")], False)
    decoder.decode(good)
    cut = good[: good.index(b"00-abc") + 3]  # the value ends before its length says
    with pytest.raises(ConnectionError_) as raised:
        decoder.decode(cut)
    assert raised.value.code == f.COMPRESSION_ERROR


@pytest.mark.parametrize("huffman", [True, False])
def test_with_the_sidecar_reading_traceparent_every_value_is_read(
    huffman: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    scans = count_scans(monkeypatch)
    decoder = fresh_decoder(READ_TRACE)
    for n in range(4):
        trace = f"00-{n:032x}-{n:016x}-01"
        data = block([("x-user-id", "u")], trace, [("te", "trailers")], huffman)
        path, metadata, held = decoder.decode(data)
        assert (path, metadata) == expected(data, READ_TRACE)
        assert metadata == (("x-user-id", "u"), ("traceparent", trace))
        assert held == 9 + 1 + 32 + 11 + 55 + 32
    assert scans == [1]  # the later blocks: prefix and suffix from the entry, value decoded


def test_a_second_traceparent_field_is_never_masked_away(monkeypatch: pytest.MonkeyPatch) -> None:
    scans = count_scans(monkeypatch)
    decoder = fresh_decoder(READ_TRACE)
    for n in range(3):
        data = block([("traceparent", "00-first")], f"00-{n}", [], True)
        _path, metadata, _held = decoder.decode(data)
        assert metadata == (("traceparent", "00-first"), ("traceparent", f"00-{n}"))
    assert scans == [1, 1, 1]


def test_an_invalid_huffman_value_read_from_the_entry_is_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scans = count_scans(monkeypatch)
    decoder = fresh_decoder(READ_TRACE)
    good = block([], "00-abcdefgh", [("x-user-id", "u")], False)
    decoder.decode(good)
    at = good.index(b"00-abcdefgh")
    # The same field, marked Huffman-coded, with the EOS code as its value (5 bytes).
    bad = good[: at - 1] + bytes([0x80 | 5]) + b"\xff" * 5 + good[at + 11 :]
    with pytest.raises(ConnectionError_) as raised:
        decoder.decode(bad)
    assert raised.value.code == f.COMPRESSION_ERROR
    assert scans == [1]  # refused on the masked path, where the value alone is decoded
