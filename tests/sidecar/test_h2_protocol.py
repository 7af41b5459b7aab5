"""Protocol-level tests of the built-in HTTP/2 gRPC server (extproc/sidecar/h2/).

What a well-behaved gRPC client never does: tiny flow-control windows, header
blocks in pieces, padding, messages split or packed across DATA frames, resets
mid-call, malformed frames, HPACK dynamic-table games, stopping with open
streams, fuzzed input. Well-formed traffic comes from h2 (python-hyper), the
rest from raw sockets and hyperframe (see h2_peer.py). Most tests run the bare
``H2Server`` with the probe methods below (``served``); the ``real_*`` tests run
the real Process and Check through the harness's Sidecar.

Every test ends with the ``peers`` fixture's checks: no exception escaped the
protocol into the event loop, a new connection is still served, and every
connection the server had is gone once the client side is closed.
"""

from __future__ import annotations

import json
import logging
import socket
import struct
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import hpack
import pytest
from envoy.service.ext_proc.v3 import external_processor_pb2 as ext_proc
from grpc_health.v1 import health_pb2
from h2.settings import SettingCodes
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from extproc.core.decide import decide
from extproc.core.model import Rules
from extproc.sidecar.h2.connection import Metadata, RpcError
from extproc.sidecar.server import EXT_PROC_SERVICE

from .h2_peer import (
    PREFACE,
    TIMEOUT,
    H2Peer,
    RawPeer,
    ServedH2,
    blob,
    connect,
    grpc_message,
    grpc_messages,
    raw_frame,
    request_headers,
)
from .harness import SERVING, Sidecar, expected_metadata, metadata_of, user_request, wait_for

# Frame types, flags and error codes, spelled out from RFC 9113.
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS = 0x0, 0x1, 0x2, 0x3, 0x4
PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 0x5, 0x6, 0x7, 0x8, 0x9
END_STREAM, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x4, 0x8, 0x20
NO_ERROR, PROTOCOL_ERROR, FLOW_CONTROL_ERROR, FRAME_SIZE_ERROR = 0x0, 0x1, 0x3, 0x6
REFUSED_STREAM, CANCEL, COMPRESSION_ERROR = 0x7, 0x8, 0x9
MiB = 1 << 20

PROCESS = f"/{EXT_PROC_SERVICE}/Process"
CHECK = "/grpc.health.v1.Health/Check"

# -- the probe methods ---------------------------------------------------------------------

ECHO = "/test.Probe/Echo"  # answers each message with itself; b"fail" raises RpcError
BLOB = "/test.Probe/Blob"  # answers b"N" with blob(N)
CRASH = "/test.Probe/Crash"  # a bug: raises RuntimeError
META = "/test.Probe/Meta"  # answers with the stream's metadata as JSON
META2 = "/test.Probe/Meta2"
FAIL_STATUS = 9  # FAILED_PRECONDITION
FAIL_MESSAGE = "réglé à 100%\r\nnon"
FAIL_ON_WIRE = "r%C3%A9gl%C3%A9 %C3%A0 100%25%0D%0Anon"  # gRPC's percent-encoding, by hand


def echo(message: bytes, metadata: Metadata) -> bytes:
    if message == b"fail":
        raise RpcError(FAIL_STATUS, FAIL_MESSAGE)
    return message


def crash(message: bytes, metadata: Metadata) -> bytes:
    raise RuntimeError("a bug in a method")


def meta(message: bytes, metadata: Metadata) -> bytes:
    return json.dumps(metadata).encode()


ROUTES = {
    ECHO: echo,
    BLOB: lambda message, metadata: blob(int(message)),
    CRASH: crash,
    META: meta,
    META2: meta,
}


class Peers:
    """Opens peers to one server and closes them all at the end."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.opened: list[H2Peer | RawPeer] = []

    def h2(self, **kwargs: Any) -> H2Peer:
        peer = H2Peer(self.port, **kwargs)
        self.opened.append(peer)
        return peer

    def raw(self, **kwargs: Any) -> RawPeer:
        peer = RawPeer(self.port, **kwargs)
        self.opened.append(peer)
        return peer

    def close(self) -> None:
        for peer in self.opened:
            peer.close()


def assert_intact(served: ServedH2) -> None:
    errors = list(served.errors)
    served.errors.clear()  # one failing test must not fail every later one
    assert errors == [], "exceptions escaped the protocol into the event loop"
    fresh = H2Peer(served.port)
    try:
        assert fresh.call(ECHO, b"still serving").messages == [b"still serving"]
    finally:
        fresh.close()
    wait_for(lambda: served.connections() == 0, "the server to drop closed connections")


@pytest.fixture(scope="module")
def served() -> Iterator[ServedH2]:
    server = ServedH2(ROUTES)
    yield server
    server.close()


@pytest.fixture
def peers(served: ServedH2) -> Iterator[Peers]:
    opened = Peers(served.port)
    yield opened
    opened.close()
    assert_intact(served)


@pytest.fixture(scope="module")
def h2_sidecar(rules_file: Path) -> Iterator[Sidecar]:
    running = Sidecar(rules_file, server="h2")
    yield running
    running.stop()


def of_stream(frames: list[Frame], stream_id: int) -> list[Frame]:
    return [f for f in frames if f.stream_id == stream_id]


def ends(stream_id: int) -> Callable[[Frame], bool]:
    return lambda f: f.stream_id == stream_id and "END_STREAM" in f.flags


# -- connection set-up: preface, SETTINGS, PING ------------------------------------------


@pytest.mark.parametrize(
    "garbage",
    [
        b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
        PREFACE[:-1] + b"?",
        b"GET /\r\n\r\n",  # shorter than the preface: must not wait for more
    ],
    ids=["http1", "one-byte-off", "short"],
)
def test_bad_preface_gets_goaway_and_close_others_unaffected(peers: Peers, garbage: bytes) -> None:
    good = peers.h2()
    assert good.call(ECHO, b"before").messages == [b"before"]
    bad = peers.raw(preface=False)
    bad.send(garbage)
    goaway = bad.goaway()
    assert (goaway.error_code, goaway.last_stream_id) == (PROTOCOL_ERROR, 0)
    assert good.call(ECHO, b"after").messages == [b"after"]


def test_ping_is_answered_with_ack_and_same_bytes(peers: Peers) -> None:
    raw = peers.raw()
    opaque = b"\x00\xffping\x01\x02"
    raw.send(raw_frame(PING, 0, 0, opaque))
    frames = raw.frames_until(lambda f: isinstance(f, PingFrame))
    pings = [f for f in frames if isinstance(f, PingFrame)]
    assert [(p.opaque_data, "ACK" in p.flags) for p in pings] == [(opaque, True)]
    # A PING ACK from the client is not answered.
    raw.send(raw_frame(PING, 0x1, 0, b"unsolic."))
    assert [f for f in raw.barrier() if isinstance(f, PingFrame)] == []


def test_settings_are_acked_every_time(peers: Peers) -> None:
    raw = peers.raw(settings={SettingCodes.INITIAL_WINDOW_SIZE: 1000})
    first = raw.frames_until(lambda f: isinstance(f, SettingsFrame) and "ACK" in f.flags)
    (server_settings,) = [f for f in first if isinstance(f, SettingsFrame) and not f.flags]
    assert server_settings.settings[SettingCodes.HEADER_TABLE_SIZE] == 0
    raw.send(SettingsFrame(0, settings={SettingCodes.MAX_FRAME_SIZE: 20_000}))
    acks = [f for f in raw.barrier() if isinstance(f, SettingsFrame)]
    assert [(a.flags, a.settings) for a in acks] == [({"ACK"}, {})]


# -- flow control toward the client --------------------------------------------------------


def test_response_over_a_small_stream_window_follows_window_updates(peers: Peers) -> None:
    peer = peers.h2(settings={SettingCodes.INITIAL_WINDOW_SIZE: 10})
    peer.auto_credit = False
    stream_id = peer.open(BLOB)
    peer.send(stream_id, grpc_message(b"95"), end=True)  # answer: 5 + 95 bytes
    call = peer.calls[stream_id]
    peer.barrier()
    assert (len(call.body), call.trailers) == (10, None)
    for credit in (7, 1, 30, 40):
        before = len(call.body)
        peer.increment_window(credit, stream_id)
        peer.barrier()
        assert len(call.body) == before + credit  # exactly the credit, no more
        assert call.trailers is None  # 88 of 100 bytes so far: no trailers yet
    peer.increment_window(12, stream_id)
    peer.barrier()
    assert call.messages == [blob(95)]
    assert call.order[-2:] == ["trailers", "end"]  # trailers after the last DATA
    assert call.status == 0


def test_response_over_the_connection_window_follows_window_updates(peers: Peers) -> None:
    peer = peers.h2(settings={SettingCodes.INITIAL_WINDOW_SIZE: 4 * MiB})
    peer.auto_credit = False
    stream_id = peer.open(BLOB)
    peer.send(stream_id, grpc_message(b"100000"), end=True)
    call = peer.calls[stream_id]
    peer.barrier()
    assert (len(call.body), call.trailers) == (65_535, None)  # the connection's initial window
    peer.increment_window(10_000)
    peer.barrier()
    assert (len(call.body), call.trailers) == (75_535, None)
    peer.increment_window(100_005 - 75_535)
    peer.barrier()
    assert call.messages == [blob(100_000)]
    assert call.order[-2:] == ["trailers", "end"] and call.status == 0


# -- header blocks and DATA framing ------------------------------------------------------


def thirds(data: bytes) -> tuple[bytes, bytes, bytes]:
    a, b = len(data) // 3, 2 * len(data) // 3
    return data[:a], data[a:b], data[b:]


HEADER_STYLES: dict[str, Callable[[int, bytes], list[Frame]]] = {
    "continuations": lambda sid, block: [
        HeadersFrame(sid, thirds(block)[0]),
        ContinuationFrame(sid, thirds(block)[1]),
        ContinuationFrame(sid, thirds(block)[2], flags=["END_HEADERS"]),
    ],
    "padded": lambda sid, block: [
        HeadersFrame(sid, block, flags=["END_HEADERS", "PADDED"], pad_length=40)
    ],
    "priority": lambda sid, block: [
        PriorityFrame(sid, depends_on=0, stream_weight=10),
        HeadersFrame(
            sid, block, flags=["END_HEADERS", "PRIORITY"], depends_on=0, stream_weight=200
        ),
    ],
    "all": lambda sid, block: [
        HeadersFrame(
            sid, thirds(block)[0], flags=["PADDED", "PRIORITY"], pad_length=255, exclusive=True
        ),
        ContinuationFrame(sid, thirds(block)[1]),
        ContinuationFrame(sid, thirds(block)[2], flags=["END_HEADERS"]),
    ],
}
DATA_STYLES: dict[str, Callable[[int, bytes], list[Frame]]] = {
    "plain": lambda sid, body: [DataFrame(sid, body, flags=["END_STREAM"])],
    "padded": lambda sid, body: [
        DataFrame(sid, body, flags=["END_STREAM", "PADDED"], pad_length=30)
    ],
    "padded-split": lambda sid, body: [
        DataFrame(sid, body[:3], flags=["PADDED"], pad_length=0),
        DataFrame(sid, b"", flags=["PADDED"], pad_length=9),
        DataFrame(sid, body[3:], flags=["PADDED", "END_STREAM"], pad_length=255),
    ],
}


def raw_call(raw: RawPeer, stream_id: int) -> tuple[dict[str, str], list[bytes], dict[str, str]]:
    """Read one stream to its END_STREAM: (headers, messages, trailers)."""
    frames = of_stream(raw.frames_until(ends(stream_id)), stream_id)
    blocks = [raw.headers(f) for f in frames if isinstance(f, HeadersFrame)]
    body = b"".join(f.data for f in frames if isinstance(f, DataFrame))
    assert len(blocks) == 2, frames
    return blocks[0], grpc_messages(body), blocks[1]


@pytest.mark.parametrize("data_style", DATA_STYLES)
@pytest.mark.parametrize("header_style", HEADER_STYLES)
def test_headers_in_pieces_padding_and_priority(
    peers: Peers, header_style: str, data_style: str
) -> None:
    raw = peers.raw()
    metadata = [("x-long", "v" * 3000), ("x-style", f"{header_style}/{data_style}")]
    block = raw.block(META, metadata)
    raw.send(
        *HEADER_STYLES[header_style](1, block),
        *DATA_STYLES[data_style](1, grpc_message(b"")),
    )
    headers, (answer,), trailers = raw_call(raw, 1)
    assert headers[":status"] == "200" and trailers == {"grpc-status": "0"}
    expected = [["content-type", "application/grpc"], ["te", "trailers"], *map(list, metadata)]
    assert json.loads(answer) == expected


def test_message_split_across_many_data_frames(peers: Peers) -> None:
    peer = peers.h2()
    stream_id = peer.open(ECHO)
    wire = grpc_message(blob(300))
    for start in range(0, len(wire) - 1):  # one byte per frame, the prefix too
        peer.send(stream_id, wire[start : start + 1])
    peer.barrier()
    assert peer.calls[stream_id].order == []  # one byte short: nothing yet
    peer.send(stream_id, wire[-1:])
    peer.barrier()
    assert peer.calls[stream_id].messages == [blob(300)]


def test_several_messages_in_one_data_frame_answered_in_order(peers: Peers) -> None:
    peer = peers.h2()
    stream_id = peer.open(ECHO)
    first, second, third, fourth = b"one", b"", blob(40), b"four"
    peer.send(stream_id, grpc_message(first) + grpc_message(second) + grpc_message(third))
    # A frame holding the tail of one message and the head of the next:
    tail = grpc_message(fourth) + grpc_message(b"five")
    peer.send(stream_id, tail[:7])
    peer.send(stream_id, tail[7:], end=True)
    call = peer.wait_end(stream_id)
    assert call.messages == [first, second, third, fourth, b"five"]
    assert call.status == 0


# -- how calls end ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "payloads", "status", "message", "answers"),
    [
        (
            "/test.Probe/Nope",
            [grpc_message(b"x")],
            12,
            "unknown method",
            [],
        ),  # the path is never echoed
        (ECHO, [grpc_message(b"fail")], FAIL_STATUS, FAIL_ON_WIRE, []),
        (ECHO, [grpc_message(b"ok"), grpc_message(b"fail")], FAIL_STATUS, FAIL_ON_WIRE, [b"ok"]),
        (CRASH, [grpc_message(b"x")], 13, "internal error", []),
        (ECHO, [grpc_message(b"x", compressed=True)], 12, None, []),
        (ECHO, [grpc_message(b"0123456789")[:8]], 3, None, []),  # truncated body
        (ECHO, [b"\x00\x00"], 3, None, []),  # truncated inside the length prefix
        (ECHO, [], 0, "", []),  # END_STREAM with no message
        (ECHO, [grpc_message(b"")], 0, "", [b""]),
    ],
    ids=[
        "unknown-path",
        "rpc-error",
        "rpc-error-after-answer",
        "unexpected-exception",
        "compressed",
        "truncated",
        "truncated-prefix",
        "no-message",
        "empty-message",
    ],
)
def test_call_status(
    peers: Peers,
    path: str,
    payloads: list[bytes],
    status: int,
    message: str | None,
    answers: list[bytes],
) -> None:
    peer = peers.h2()
    stream_id = peer.open(path)
    for payload in payloads:
        peer.send(stream_id, payload)
    peer.end(stream_id)
    call = peer.wait_end(stream_id)
    assert (call.status, call.messages) == (status, answers)
    if message is not None:
        assert call.message == message
    if status == FAIL_STATUS:  # what a gRPC client shows: percent-decoded UTF-8
        assert urllib.parse.unquote(call.message, errors="strict") == FAIL_MESSAGE
    # No answer before the end: headers and trailers travel in one block (trailers-only).
    assert (call.trailers is None) == (not answers)
    assert call.headers[":status"] == "200"
    assert call.headers["content-type"] == "application/grpc"


def test_unexpected_exception_is_internal_and_the_connection_keeps_serving(peers: Peers) -> None:
    peer = peers.h2()
    for _ in range(3):
        assert peer.call(CRASH, b"x").status == 13
        assert peer.call(ECHO, b"next").messages == [b"next"]


def test_message_over_4_mib_is_refused_from_its_prefix(peers: Peers) -> None:
    peer = peers.h2()
    over = peer.open(ECHO)
    peer.send(over, b"\x00" + (4 * MiB + 1).to_bytes(4, "big") + b"abc")  # 8 bytes sent
    call = peer.wait_end(over)  # answered without the body and without our END_STREAM
    assert call.status == 8 and "over the limit" in call.message
    at_limit = peer.open(ECHO)  # exactly 4 MiB is allowed: it waits for the rest
    peer.send(at_limit, b"\x00" + (4 * MiB).to_bytes(4, "big") + b"abc")
    peer.barrier()
    assert peer.calls[at_limit].order == []
    peer.conn.reset_stream(at_limit, CANCEL)
    peer.flush()


@pytest.mark.parametrize(
    "ending",
    ["headers-end-stream-unknown-path", "rpc-error-with-end-stream", "compressed-with-end-stream"],
)
def test_nothing_follows_the_trailers_of_a_half_closed_stream(peers: Peers, ending: str) -> None:
    """After END_STREAM both ways the stream is closed: no RST_STREAM may follow."""
    raw = peers.raw()
    if ending == "headers-end-stream-unknown-path":
        raw.send(HeadersFrame(1, raw.block("/nope"), flags=["END_HEADERS", "END_STREAM"]))
    else:
        payload = grpc_message(b"fail") if ending.startswith("rpc") else grpc_message(b"x", True)
        raw.send(
            HeadersFrame(1, raw.block(ECHO), flags=["END_HEADERS"]),
            DataFrame(1, payload, flags=["END_STREAM"]),
        )
    frames = raw.frames_until(ends(1)) + raw.barrier()
    assert [type(f) for f in of_stream(frames, 1)] == [HeadersFrame]


def test_open_request_side_is_reset_with_no_error_after_trailers(peers: Peers) -> None:
    """The server ended the call while the client may still send: RST_STREAM(NO_ERROR)."""
    raw = peers.raw()
    raw.send(
        HeadersFrame(1, raw.block(ECHO), flags=["END_HEADERS"]),
        DataFrame(1, grpc_message(b"fail")),
    )
    frames = of_stream(raw.frames_until(ends(1)) + raw.barrier(), 1)
    assert [type(f) for f in frames] == [HeadersFrame, RstStreamFrame]
    assert isinstance(frames[1], RstStreamFrame) and frames[1].error_code == NO_ERROR


def test_client_reset_mid_call_forgets_the_stream(peers: Peers, served: ServedH2) -> None:
    raw = peers.raw(settings={SettingCodes.INITIAL_WINDOW_SIZE: 10})
    raw.send(
        HeadersFrame(1, raw.block(BLOB), flags=["END_HEADERS"]),
        DataFrame(1, grpc_message(b"1000")),
    )
    sent = of_stream(raw.barrier(), 1)  # the answer is stuck on our window
    assert [type(f) for f in sent] == [HeadersFrame, DataFrame]
    assert isinstance(sent[1], DataFrame) and len(sent[1].data) == 10
    assert served.open_streams() == 1
    raw.send(RstStreamFrame(1, error_code=CANCEL))
    # Everything that would make the server send more for stream 1:
    raw.send(
        SettingsFrame(0, settings={SettingCodes.INITIAL_WINDOW_SIZE: 1 * MiB}),
        WindowUpdateFrame(1, window_increment=5000),
        WindowUpdateFrame(0, window_increment=5000),
        DataFrame(1, grpc_message(b"20")),
    )
    assert of_stream(raw.barrier(), 1) == []
    assert served.open_streams() == 0
    raw.send(
        HeadersFrame(3, raw.block(BLOB), flags=["END_HEADERS"]),
        DataFrame(3, grpc_message(b"2000"), flags=["END_STREAM"]),
    )
    _, answers, trailers = raw_call(raw, 3)
    assert answers == [blob(2000)] and trailers == {"grpc-status": "0"}


# -- connection errors -------------------------------------------------------------------------

MALFORMED: dict[str, tuple[bytes, int]] = {
    # Only the 9-byte header: the server must not wait for (or buffer) the payload.
    "frame-over-16384": (raw_frame(DATA, 0, 3, bytes(16_385))[:9], FRAME_SIZE_ERROR),
    "headers-on-stream-0": (raw_frame(HEADERS, END_HEADERS, 0, b"\x83"), PROTOCOL_ERROR),
    "headers-on-even-stream": (raw_frame(HEADERS, END_HEADERS, 2, b"\x83"), PROTOCOL_ERROR),
    "continuation-without-headers": (
        raw_frame(CONTINUATION, END_HEADERS, 3, b"\x83"),
        PROTOCOL_ERROR,
    ),
    "data-between-headers-and-continuation": (
        raw_frame(HEADERS, 0, 3, b"\x83") + raw_frame(DATA, 0, 3, b"x"),
        PROTOCOL_ERROR,
    ),
    "continuation-of-another-stream": (
        raw_frame(HEADERS, 0, 3, b"\x83") + raw_frame(CONTINUATION, END_HEADERS, 5, b""),
        PROTOCOL_ERROR,
    ),
    "hpack-index-0": (raw_frame(HEADERS, END_HEADERS, 3, b"\x80"), COMPRESSION_ERROR),
    "hpack-index-huge": (
        raw_frame(HEADERS, END_HEADERS, 3, b"\xff\xff\xff\xff\x0f"),
        COMPRESSION_ERROR,
    ),
    "hpack-truncated-literal": (
        raw_frame(HEADERS, END_HEADERS, 3, b"\x40\x05ab"),
        COMPRESSION_ERROR,
    ),
    "hpack-table-over-4096": (
        raw_frame(HEADERS, END_HEADERS, 3, b"\x3f\xe2\x1f"),
        COMPRESSION_ERROR,
    ),
    "push-promise": (
        raw_frame(PUSH_PROMISE, END_HEADERS, 3, b"\x00\x00\x00\x02\x83"),
        PROTOCOL_ERROR,
    ),
    "headers-padding-too-long": (
        raw_frame(HEADERS, END_HEADERS | PADDED, 3, b"\x05\x83"),
        PROTOCOL_ERROR,
    ),
    "headers-padded-empty": (raw_frame(HEADERS, END_HEADERS | PADDED, 3, b""), PROTOCOL_ERROR),
    "headers-priority-too-short": (
        raw_frame(HEADERS, END_HEADERS | PRIORITY_FLAG, 3, b"\x00\x00"),
        PROTOCOL_ERROR,
    ),
    "data-on-stream-0": (raw_frame(DATA, 0, 0, b"x"), PROTOCOL_ERROR),
    "ping-wrong-length": (raw_frame(PING, 0, 0, b"1234567"), FRAME_SIZE_ERROR),
    "settings-wrong-length": (raw_frame(SETTINGS, 0, 0, b"\x00\x04\x00\x00"), FRAME_SIZE_ERROR),
    "settings-on-a-stream": (raw_frame(SETTINGS, 0, 1, b""), PROTOCOL_ERROR),
    "settings-window-too-large": (
        raw_frame(SETTINGS, 0, 0, struct.pack(">HI", 4, 2**31)),
        FLOW_CONTROL_ERROR,
    ),
    "settings-max-frame-too-small": (
        raw_frame(SETTINGS, 0, 0, struct.pack(">HI", 5, 16_383)),
        PROTOCOL_ERROR,
    ),
    "settings-max-frame-too-large": (
        raw_frame(SETTINGS, 0, 0, struct.pack(">HI", 5, 2**24)),
        PROTOCOL_ERROR,
    ),
    "window-update-wrong-length": (raw_frame(WINDOW_UPDATE, 0, 0, b"\x00\x01"), FRAME_SIZE_ERROR),
    "window-update-zero": (raw_frame(WINDOW_UPDATE, 0, 0, b"\x00\x00\x00\x00"), PROTOCOL_ERROR),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_connection_error_sends_goaway_and_closes(peers: Peers, case: str) -> None:
    raw = peers.raw()
    assert raw_call_ok(raw, 1)
    bad, code = MALFORMED[case]
    raw.send(bad)
    goaway = raw.goaway()
    assert (goaway.error_code, goaway.last_stream_id) == (code, 1)


def raw_call_ok(raw: RawPeer, stream_id: int) -> bool:
    raw.send(
        HeadersFrame(stream_id, raw.block(ECHO), flags=["END_HEADERS"]),
        DataFrame(stream_id, grpc_message(b"hi"), flags=["END_STREAM"]),
    )
    _, answers, trailers = raw_call(raw, stream_id)
    return answers == [b"hi"] and trailers == {"grpc-status": "0"}


# -- HPACK: peers that use the dynamic table ------------------------------------------------

BASE_METADATA = [["content-type", "application/grpc"], ["te", "trailers"]]


def test_h2_client_indexing_before_and_after_our_settings(peers: Peers) -> None:
    """h2's default encoder indexes into a 4096-byte table until it reads our SETTINGS,
    then announces size 0 in its next block; every stream must decode as sent."""
    peer = peers.h2(handshake=False)
    sent: dict[int, list[tuple[str, str]]] = {}

    def meta_call(metadata: list[tuple[str, str]]) -> None:
        stream_id = peer.open(META, metadata)
        peer.send(stream_id, grpc_message(b""), end=True)
        sent[stream_id] = metadata

    for i in range(6):  # before reading anything from the server
        meta_call([("x-user", f"user-{i % 2}"), ("x-i", str(i))])
    assert len(peer.conn.encoder.header_table.dynamic_entries) > 2  # premise: h2 indexed
    peer.handshake()
    for i in range(60):  # repeats (cache hits) mixed with new values
        meta_call([("x-user", f"user-{i % 3}")] + ([("x-i", str(i))] if i % 4 == 0 else []))
    assert peer.conn.encoder.header_table_size == 0  # premise: h2 applied our SETTINGS
    for stream_id, metadata in sent.items():
        call = peer.wait_end(stream_id)
        assert json.loads(call.messages[0]) == BASE_METADATA + [list(p) for p in metadata]


def test_table_resized_up_again_before_our_settings_apply(peers: Peers) -> None:
    """Until a peer acknowledges our HEADER_TABLE_SIZE=0 it may resize its table at will.
    A block first decoded with a zero-size table must not be taken from the cache when
    the table is not zero-size any more: there the same bytes add table entries."""
    raw = peers.raw()
    encoder = hpack.Encoder()
    meta_a = [(":method", "POST"), (":scheme", "http"), (":path", META), ("x-k", "a")]
    meta_b = [(":method", "POST"), (":scheme", "http"), (":path", META2), ("x-j", "b")]
    encoder.header_table_size = 0
    blocks = [encoder.encode(meta_a), encoder.encode(meta_a)]  # [size 0] + literals; literals
    encoder.header_table_size = 4096
    blocks.append(encoder.encode(meta_b))  # [size 4096] + literals that index
    blocks.append(encoder.encode(meta_a))  # the bytes of block 2, but now they index
    blocks.append(encoder.encode(meta_a))  # references to what block 4 indexed
    assert blocks[3] == blocks[1] and len(blocks[4]) < len(blocks[1])  # premise
    for i, block in enumerate(blocks):
        stream_id = 2 * i + 1
        raw.send(
            HeadersFrame(stream_id, block, flags=["END_HEADERS"]),
            DataFrame(stream_id, grpc_message(b""), flags=["END_STREAM"]),
        )
    for i, headers in enumerate([meta_a, meta_a, meta_b, meta_a, meta_a]):
        _, (answer,), _ = raw_call(raw, 2 * i + 1)
        assert json.loads(answer) == [list(h) for h in headers[3:]], f"block {i + 1}"


def test_block_that_used_the_table_is_not_reused_once_the_table_is_gone(peers: Peers) -> None:
    """Bytes that referred to table entries mean nothing with a zero-size table: sent
    again then, they are a COMPRESSION_ERROR, not a cached answer."""
    raw = peers.raw()
    encoder = hpack.Encoder()
    meta_a = [(":method", "POST"), (":scheme", "http"), (":path", META), ("x-k", "a")]
    indexing, referring = encoder.encode(meta_a), encoder.encode(meta_a)
    encoder.header_table_size = 0
    for stream_id, block in ((1, indexing), (3, referring), (5, encoder.encode(meta_a))):
        raw.send(
            HeadersFrame(stream_id, block, flags=["END_HEADERS"]),
            DataFrame(stream_id, grpc_message(b""), flags=["END_STREAM"]),
        )
        _, (answer,), _ = raw_call(raw, stream_id)
        assert json.loads(answer) == [["x-k", "a"]]
    raw.send(HeadersFrame(7, referring, flags=["END_HEADERS", "END_STREAM"]))
    goaway = raw.goaway()
    assert (goaway.error_code, goaway.last_stream_id) == (COMPRESSION_ERROR, 5)


# -- graceful stop -----------------------------------------------------------------------------


def open_echo(raw: RawPeer, stream_id: int, message: bytes) -> None:
    """Open an echo stream (left open) and wait for the answer to ``message``."""
    raw.send(
        HeadersFrame(stream_id, raw.block(ECHO), flags=["END_HEADERS"]),
        DataFrame(stream_id, grpc_message(message)),
    )
    raw.frames_until(lambda f: isinstance(f, DataFrame) and f.stream_id == stream_id)


def test_graceful_stop_drains_open_stream_and_refuses_new_ones() -> None:
    served = ServedH2(ROUTES)
    raw = RawPeer(served.port)
    try:
        open_echo(raw, 1, b"first")
        stopped = served.stop(grace=60)
        goaway = raw.frames_until(lambda f: isinstance(f, GoAwayFrame))[-1]
        assert isinstance(goaway, GoAwayFrame)
        assert (goaway.error_code, goaway.last_stream_id) == (NO_ERROR, 1)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", served.port), timeout=TIMEOUT).close()
        raw.send(HeadersFrame(3, raw.block(ECHO), flags=["END_HEADERS"]))
        refused = raw.frames_until(lambda f: f.stream_id == 3)
        assert isinstance(refused[-1], RstStreamFrame)
        assert refused[-1].error_code == REFUSED_STREAM
        assert not stopped.done()  # stream 1 is still open and the grace is long
        raw.send(DataFrame(1, grpc_message(b"second"), flags=["END_STREAM"]))
        frames = of_stream(raw.until_closed(), 1)  # the server closes once stream 1 is done
        body = b"".join(f.data for f in frames if isinstance(f, DataFrame))
        assert grpc_messages(body) == [b"second"]
        assert raw.headers(frames[-1]) == {"grpc-status": "0"}
        stopped.result(TIMEOUT)  # returned once the stream finished, not after the grace
        assert served.errors == []
    finally:
        raw.close()
        served.close()


def test_stop_closes_streams_still_open_when_the_grace_ends() -> None:
    served = ServedH2(ROUTES)
    raw = RawPeer(served.port)
    try:
        open_echo(raw, 1, b"never finished")
        stopped = served.stop(grace=0.1)
        frames = raw.until_closed()
        assert [f.error_code for f in frames if isinstance(f, GoAwayFrame)] == [NO_ERROR]
        stopped.result(TIMEOUT)
        assert served.errors == [] and served.connections() == 0
    finally:
        raw.close()
        served.close()


# -- the real Process and Check (harness Sidecar, server="h2") ----------------------------


def check_request(service: str = "") -> bytes:
    return health_pb2.HealthCheckRequest(service=service).SerializeToString()


def process_request(user: str) -> bytes:
    return grpc_message(user_request(user).SerializeToString())


def decisions(rules: Rules, call_messages: list[bytes], users: list[str]) -> None:
    got = [metadata_of(ext_proc.ProcessingResponse.FromString(m)) for m in call_messages]
    assert got == [expected_metadata(decide(rules, {"x-user-id": u})) for u in users]


def test_real_check_from_a_client_indexing_before_our_settings(h2_sidecar: Sidecar) -> None:
    assert h2_sidecar.running is not None
    peer = H2Peer(h2_sidecar.running.port, handshake=False)
    try:
        streams = []
        for i in range(30):
            if i == 5:
                peer.handshake()
            stream_id = peer.open(CHECK, [("user-agent", "probe"), ("x-n", str(i % 4))])
            peer.send(stream_id, grpc_message(check_request()), end=True)
            streams.append(stream_id)
        for stream_id in streams:
            call = peer.wait_end(stream_id)
            assert call.status == 0
            assert health_pb2.HealthCheckResponse.FromString(call.messages[0]).status == SERVING
        unknown = peer.call(CHECK, check_request("nope"))
        assert (unknown.status, unknown.message) == (5, "unknown service nope")
    finally:
        peer.close()


def test_real_process_messages_packed_and_split(h2_sidecar: Sidecar, rules: Rules) -> None:
    assert h2_sidecar.running is not None
    peer = H2Peer(h2_sidecar.running.port)
    try:
        stream_id = peer.open(PROCESS)
        peer.send(stream_id, process_request("alice") + process_request("bob"))
        split = process_request("carol")
        for i in range(len(split)):
            peer.send(stream_id, split[i : i + 1])
        peer.end(stream_id)
        call = peer.wait_end(stream_id)
        assert call.status == 0
        decisions(rules, call.messages, ["alice", "bob", "carol"])
    finally:
        peer.close()


def test_real_process_with_padding_continuations_and_priority(
    h2_sidecar: Sidecar, rules: Rules
) -> None:
    assert h2_sidecar.running is not None
    raw = RawPeer(h2_sidecar.running.port)
    try:
        block = raw.block(PROCESS, [("traceparent", "00-" + "1" * 32 + "-" + "2" * 16 + "-01")])
        raw.send(*HEADER_STYLES["all"](1, block), DataFrame(1, process_request("dave")))
        frames = raw.frames_until(lambda f: isinstance(f, DataFrame) and f.stream_id == 1)
        assert isinstance(frames[-1], DataFrame)
        decisions(rules, grpc_messages(frames[-1].data), ["dave"])
        raw.send(RstStreamFrame(1, error_code=CANCEL))  # how Envoy ends every stream
        raw.send(
            *HEADER_STYLES["continuations"](3, raw.block(PROCESS)),
            *DATA_STYLES["padded-split"](3, process_request("erin")),
        )
        _, answers, trailers = raw_call(raw, 3)
        decisions(rules, answers, ["erin"])
        assert trailers == {"grpc-status": "0"}
    finally:
        raw.close()


# -- fuzzing: nothing a peer sends breaks the server ------------------------------------


class ErrorRecords(logging.Handler):
    """Keeps ERROR records: asyncio logs every exception that escapes a protocol."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def loop_errors() -> Iterator[list[logging.LogRecord]]:
    handler = ErrorRecords()
    logger = logging.getLogger("asyncio")
    logger.addHandler(handler)
    yield handler.records
    logger.removeHandler(handler)


def hurl(port: int, data: bytes) -> None:
    """Send ``data`` on a fresh connection, half-close, read until the server closes."""
    with connect(port) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
            while sock.recv(65_536):
                pass
        except TimeoutError:
            pytest.fail(f"the server neither answered nor closed within {TIMEOUT}s")
        except OSError:
            pass  # reset: the server closed with our bytes unread


def assert_check_serving(port: int) -> None:
    peer = H2Peer(port)
    try:
        call = peer.call(CHECK, check_request())
    finally:
        peer.close()
    assert call.status == 0
    assert [health_pb2.HealthCheckResponse.FromString(m).status for m in call.messages] == [SERVING]


FUZZ_BLOCKS = [hpack.Encoder().encode(request_headers(p)) for p in (CHECK, PROCESS, "/nope")]
FUZZ_PAYLOADS = st.one_of(
    st.binary(max_size=40),
    st.sampled_from(FUZZ_BLOCKS),
    st.tuples(st.integers(0, 255), st.sampled_from(FUZZ_BLOCKS)).map(
        lambda p: bytes([p[0]]) + p[1]  # as if PADDED
    ),
    st.binary(max_size=40).map(grpc_message),
    st.sampled_from([b"", grpc_message(check_request()), process_request("fuzz")]),
)
FUZZ_FRAMES = st.lists(
    st.tuples(
        st.integers(0, 12),  # every type, and a few unknown ones
        st.one_of(st.sampled_from([0, 0x1, 0x4, 0x5, 0x8, 0xC, 0x24, 0x2D]), st.integers(0, 255)),
        st.sampled_from([0, 1, 2, 3, 5, 2**31 - 1, 2**32 - 1]),
        FUZZ_PAYLOADS,
    ),
    max_size=12,
)
SETTINGS_FRAME = raw_frame(SETTINGS, 0, 0)
CONNECTION_INPUT = st.one_of(
    st.binary(max_size=200),
    st.binary(max_size=200).map(lambda b: PREFACE + b),
    FUZZ_FRAMES.map(lambda fs: PREFACE + SETTINGS_FRAME + b"".join(raw_frame(*f) for f in fs)),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=CONNECTION_INPUT)
@example(data=PREFACE + SETTINGS_FRAME + raw_frame(HEADERS, PADDED | END_HEADERS, 1))
def test_fuzzed_connections_never_break_the_server(
    h2_sidecar: Sidecar, loop_errors: list[logging.LogRecord], data: bytes
) -> None:
    assert h2_sidecar.running is not None
    port = h2_sidecar.running.port
    hurl(port, data)
    assert [r.getMessage() for r in loop_errors] == []
    assert_check_serving(port)
