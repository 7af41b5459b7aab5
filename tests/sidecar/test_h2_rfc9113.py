"""RFC 9113's MUSTs that a lenient server ignores: each answered with the right
connection error (GOAWAY, then close) or stream error (RST_STREAM, the connection
serves on). Raw frames against the bare ``H2Server`` with the probe methods of
test_h2_protocol; every test ends with its checks that the server is intact.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

import pytest
from hyperframe.frame import RstStreamFrame

from extproc.h2_limits import H2Limits
from extproc.sidecar.h2 import frames as f

from .h2_peer import RawPeer, ServedH2, grpc_message, raw_frame
from .test_h2_protocol import ECHO, ROUTES, Peers, assert_intact, raw_call_ok

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS = 0x0, 0x1, 0x2, 0x3, 0x4
PING, GOAWAY, WINDOW_UPDATE = 0x6, 0x7, 0x8
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4
MAX_WINDOW = 2**31 - 1
#: Small windows and buffer so that flow-control violations take a few frames.
SMALL = H2Limits(connection_window=65_536, max_buffered=16_384)


@pytest.fixture(scope="module")
def served() -> Iterator[ServedH2]:
    server = ServedH2(ROUTES, SMALL)
    yield server
    server.close()


@pytest.fixture
def peers(served: ServedH2) -> Iterator[Peers]:
    opened = Peers(served.port)
    yield opened
    opened.close()
    assert_intact(served)


def increment(value: int) -> bytes:
    return struct.pack(">I", value)


def open_stream(raw: RawPeer, stream_id: int, end: bool = False) -> bytes:
    flags = END_HEADERS | (END_STREAM if end else 0)
    return raw_frame(HEADERS, flags, stream_id, raw.block(ECHO))


def a_stream_left_open(raw: RawPeer) -> bytes:
    return open_stream(raw, 3)


def big_message_in_pieces(raw: RawPeer) -> bytes:
    """A 1 MiB message announced on stream 3, then 80 KiB of it: over the 64 KiB
    connection window once the 16 KiB buffer budget holds the credit back."""
    start = grpc_message(b"")[:1] + (1 << 20).to_bytes(4, "big")
    body = [raw_frame(DATA, 0, 3, start + bytes(16_379))]
    body += [raw_frame(DATA, 0, 3, bytes(16_384))] * 4
    return open_stream(raw, 3) + b"".join(body)


CONNECTION_ERRORS = {
    "stream-id-going-backwards": (
        lambda raw: open_stream(raw, 5) + open_stream(raw, 3),
        f.PROTOCOL_ERROR,
    ),
    "data-on-an-idle-stream": (lambda raw: raw_frame(DATA, 0, 7, b"x"), f.PROTOCOL_ERROR),
    "rst-stream-on-stream-0": (
        lambda raw: raw_frame(RST_STREAM, 0, 0, increment(8)),
        f.PROTOCOL_ERROR,
    ),
    "rst-stream-on-an-idle-stream": (
        lambda raw: raw_frame(RST_STREAM, 0, 9, increment(8)),
        f.PROTOCOL_ERROR,
    ),
    "rst-stream-wrong-length": (lambda raw: raw_frame(RST_STREAM, 0, 1, b"\0"), f.FRAME_SIZE_ERROR),
    "settings-ack-with-a-payload": (
        lambda raw: raw_frame(SETTINGS, ACK, 0, struct.pack(">HI", 4, 1)),
        f.FRAME_SIZE_ERROR,
    ),
    "enable-push-not-0-or-1": (
        lambda raw: raw_frame(SETTINGS, 0, 0, struct.pack(">HI", 2, 2)),
        f.PROTOCOL_ERROR,
    ),
    "ping-on-a-stream": (lambda raw: raw_frame(PING, 0, 1, bytes(8)), f.PROTOCOL_ERROR),
    "goaway-on-a-stream": (lambda raw: raw_frame(GOAWAY, 0, 1, bytes(8)), f.PROTOCOL_ERROR),
    "window-update-on-an-idle-stream": (
        lambda raw: raw_frame(WINDOW_UPDATE, 0, 11, increment(1)),
        f.PROTOCOL_ERROR,
    ),
    "connection-window-over-2^31-1": (
        lambda raw: raw_frame(WINDOW_UPDATE, 0, 0, increment(MAX_WINDOW)),
        f.FLOW_CONTROL_ERROR,
    ),
    "initial-window-change-overflows-an-open-stream": (
        lambda raw: (
            a_stream_left_open(raw)
            + raw_frame(WINDOW_UPDATE, 0, 3, increment(MAX_WINDOW - 65_535))
            + raw_frame(SETTINGS, 0, 0, struct.pack(">HI", 4, 65_536))
        ),
        f.FLOW_CONTROL_ERROR,
    ),
    "data-over-the-connection-window": (big_message_in_pieces, f.FLOW_CONTROL_ERROR),
}


@pytest.mark.parametrize("case", CONNECTION_ERRORS)
def test_connection_errors(peers: Peers, case: str) -> None:
    raw = peers.raw()
    assert raw_call_ok(raw, 1)
    build, code = CONNECTION_ERRORS[case]
    raw.send(build(raw))
    goaway = raw.goaway()
    assert goaway.error_code == code


def half_closed_remote(raw: RawPeer) -> bytes:
    """Stream 3 ended by us (END_STREAM) but not answered: our window is 0."""
    return (
        raw_frame(SETTINGS, 0, 0, struct.pack(">HI", 4, 0))
        + open_stream(raw, 3)
        + raw_frame(DATA, END_STREAM, 3, grpc_message(b"held"))
    )


STREAM_ERRORS = {
    "zero-window-update-on-a-stream": (
        lambda raw: a_stream_left_open(raw) + raw_frame(WINDOW_UPDATE, 0, 3, increment(0)),
        f.PROTOCOL_ERROR,
    ),
    "stream-window-over-2^31-1": (
        lambda raw: a_stream_left_open(raw) + raw_frame(WINDOW_UPDATE, 0, 3, increment(MAX_WINDOW)),
        f.FLOW_CONTROL_ERROR,
    ),
    "second-headers-without-end-stream": (
        lambda raw: a_stream_left_open(raw) + open_stream(raw, 3),
        f.PROTOCOL_ERROR,
    ),
    "data-on-a-half-closed-stream": (
        lambda raw: half_closed_remote(raw) + raw_frame(DATA, 0, 3, b"more"),
        f.STREAM_CLOSED,
    ),
    "headers-on-a-half-closed-stream": (
        lambda raw: half_closed_remote(raw) + open_stream(raw, 3, end=True),
        f.STREAM_CLOSED,
    ),
    "priority-wrong-length": (
        lambda raw: a_stream_left_open(raw) + raw_frame(PRIORITY, 0, 3, bytes(4)),
        f.FRAME_SIZE_ERROR,
    ),
}


@pytest.mark.parametrize("case", STREAM_ERRORS)
def test_stream_errors_reset_the_stream_and_the_connection_serves_on(
    peers: Peers, case: str
) -> None:
    raw = peers.raw()
    assert raw_call_ok(raw, 1)
    build, code = STREAM_ERRORS[case]
    raw.send(build(raw))
    resets = [fr for fr in raw.barrier() if isinstance(fr, RstStreamFrame) and fr.stream_id == 3]
    assert [r.error_code for r in resets] == [code]
    raw.send(raw_frame(SETTINGS, 0, 0, struct.pack(">HI", 4, 65_535)))
    assert raw_call_ok(raw, 5)


def test_a_response_header_block_is_split_to_the_peer_max_frame_size() -> None:
    block = bytes(range(256)) * 160  # 40,960 bytes
    wire = f.header_frames(7, f.END_STREAM, block, 16_384)
    frames, offset = [], 0
    while offset < len(wire):
        length, kind, flags, stream_id = f.parse_header(wire, offset)
        frames.append((kind, flags, stream_id, length))
        offset += 9 + length
    assert frames == [
        (f.HEADERS, f.END_STREAM, 7, 16_384),
        (f.CONTINUATION, 0, 7, 16_384),
        (f.CONTINUATION, f.END_HEADERS, 7, 40_960 - 2 * 16_384),
    ]
    payload = b"".join(wire[o + 9 : o + 9 + 16_384] for o in (0, 16_393, 32_786))
    assert payload == block
    assert f.header_frames(7, 0, b"abc", 16_384) == raw_frame(HEADERS, END_HEADERS, 7, b"abc")
