"""Client peers and a bare server for protocol tests of the built-in HTTP/2 server.

``ServedH2`` runs ``H2Server`` with small test methods on its own event loop
thread and records every error the loop's exception handler sees (an exception
escaping the protocol). ``H2Peer`` is a well-behaved client built on the ``h2``
package; ``RawPeer`` writes whatever bytes a test asks for and reads the
server's frames with ``hyperframe``. Every read waits on a condition with a
deadline (a socket timeout), never for a fixed time.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import random
import socket
import struct
import threading
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import hpack
import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import (
    DataReceived,
    Event,
    PingAckReceived,
    RemoteSettingsChanged,
    ResponseReceived,
    SettingsAcknowledged,
    StreamEnded,
    StreamReset,
    TrailersReceived,
)
from h2.settings import SettingCodes, Settings
from hyperframe.frame import Frame, GoAwayFrame, PingFrame

from extproc.h2_limits import H2Limits
from extproc.sidecar.h2.connection import Method
from extproc.sidecar.h2.server import H2Server

T = TypeVar("T")

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
TIMEOUT = 5.0  # seconds a read may wait for the server before the test fails
_pings = itertools.count(1)


def connect(port: int) -> socket.socket:
    """A loopback connection that sends each small write at once (no Nagle delay)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def raw_frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    """Any frame, valid or not (hyperframe refuses to build some invalid ones)."""
    size = len(payload)
    return struct.pack(">BHBBI", size >> 16, size & 0xFFFF, kind, flags, stream_id) + payload


def grpc_message(payload: bytes, compressed: bool = False) -> bytes:
    return struct.pack(">BI", int(compressed), len(payload)) + payload


def grpc_messages(data: bytes) -> list[bytes]:
    """Split a response body into its length-prefixed messages (all must be whole)."""
    out, offset = [], 0
    while offset < len(data):
        flag, size = struct.unpack_from(">BI", data, offset)
        assert flag == 0, "the server never compresses"
        out.append(data[offset + 5 : offset + 5 + size])
        assert len(out[-1]) == size, "truncated response message"
        offset += 5 + size
    return out


def request_headers(path: str, metadata: Iterable[tuple[str, str]] = ()) -> list[tuple[str, str]]:
    return [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", path),
        (":authority", "localhost"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        *metadata,
    ]


def blob(size: int) -> bytes:
    """Deterministic, non-periodic bytes (a corrupted or reordered chunk shows)."""
    return random.Random(size).randbytes(size)


# -- the server under test ----------------------------------------------------------------


class ServedH2:
    """``H2Server(routes)`` on 127.0.0.1 in a loop thread; ``errors`` = loop exceptions."""

    def __init__(self, routes: Mapping[str, Method], limits: H2Limits | None = None) -> None:
        self.errors: list[dict[str, Any]] = []
        self.loop = asyncio.new_event_loop()
        self.loop.set_exception_handler(lambda _loop, context: self.errors.append(context))
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.server = H2Server(routes, limits)
        self.port = self.run(self.server.start("127.0.0.1:0"))
        self._stopping: concurrent.futures.Future[None] | None = None

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(TIMEOUT)

    def on_loop(self, function: Callable[[], T]) -> T:
        """``function()`` evaluated on the loop thread (server state is not thread-safe)."""

        async def call() -> T:
            return function()

        return self.run(call())

    def open_streams(self) -> int:
        return self.on_loop(self.server.open_streams)

    def connections(self) -> int:
        return self.on_loop(lambda: len(self.server.connections))

    def stop(self, grace: float) -> concurrent.futures.Future[None]:
        """Begin ``stop(grace)``; the future is done when the server has stopped."""
        self._stopping = asyncio.run_coroutine_threadsafe(self.server.stop(grace), self.loop)
        return self._stopping

    def close(self) -> None:
        if self._stopping is None:
            self.stop(0)
        assert self._stopping is not None
        self._stopping.result(TIMEOUT)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(TIMEOUT)
        self.loop.close()


# -- a well-behaved client (python-hyper h2) ----------------------------------------------


@dataclass
class Call:
    """What one stream received, in arrival order."""

    stream_id: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytearray = field(default_factory=bytearray)
    trailers: dict[str, str] | None = None
    ended: bool = False
    reset: int | None = None
    order: list[str] = field(default_factory=list)  # "headers", "data", "trailers", "end"

    @property
    def status(self) -> int:
        """grpc-status from the trailers, or from the headers of a trailers-only answer."""
        source = self.trailers if self.trailers is not None else self.headers
        return int(source["grpc-status"])

    @property
    def message(self) -> str:
        source = self.trailers if self.trailers is not None else self.headers
        return source.get("grpc-message", "")

    @property
    def messages(self) -> list[bytes]:
        return grpc_messages(bytes(self.body))


class H2Peer:
    """A client connection driven by h2; ``calls`` collects every stream's events."""

    def __init__(
        self, port: int, settings: Mapping[int, int] | None = None, handshake: bool = True
    ) -> None:
        self.sock = connect(port)
        config = H2Configuration(client_side=True, header_encoding="utf-8")
        self.conn = H2Connection(config)
        #: False: the test grants flow-control credit itself (increment_window).
        self.auto_credit = True
        if settings is not None:
            self.conn.local_settings = Settings(
                client=True, initial_values={SettingCodes(k): v for k, v in settings.items()}
            )
        self.conn.initiate_connection()
        self.calls: dict[int, Call] = {}
        self.events: list[Event] = []
        self.flush()
        if handshake:
            self.handshake()

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def close(self) -> None:
        self.sock.close()

    def read(self) -> list[Event]:
        """One read from the socket, fed to h2; fails the test on timeout or close."""
        try:
            data = self.sock.recv(65_536)
        except TimeoutError:
            pytest.fail(f"no frame from the server within {TIMEOUT}s")
        if not data:
            pytest.fail("the server closed the connection")
        events = self.conn.receive_data(data)
        for event in events:
            self._record(event)
        self.events += events
        self.flush()
        return events

    def _record(self, event: Event) -> None:
        stream_id = getattr(event, "stream_id", None)
        if stream_id is None:
            return
        call = self.calls.setdefault(stream_id, Call(stream_id))
        if isinstance(event, ResponseReceived):
            call.headers = dict(event.headers)  # type: ignore[arg-type]
            call.order.append("headers")
        elif isinstance(event, DataReceived):
            call.body += event.data or b""
            call.order.append("data")
            if self.auto_credit and event.flow_controlled_length:
                self.conn.acknowledge_received_data(event.flow_controlled_length, stream_id)
        elif isinstance(event, TrailersReceived):
            call.trailers = dict(event.headers)  # type: ignore[arg-type]
            call.order.append("trailers")
        elif isinstance(event, StreamEnded):
            call.ended = True
            call.order.append("end")
        elif isinstance(event, StreamReset):
            call.reset = int(event.error_code or 0)

    def until(self, condition: Callable[[], object]) -> None:
        while not condition():
            self.read()

    def handshake(self) -> None:
        """Read until the server's SETTINGS arrived and ours were acknowledged."""
        self.until(
            lambda: (
                any(isinstance(e, RemoteSettingsChanged) for e in self.events)
                and any(isinstance(e, SettingsAcknowledged) for e in self.events)
            )
        )

    def barrier(self) -> list[Event]:
        """PING and wait for its ACK: the server has handled and answered all we sent.

        The server answers the frames of each read in order and writes once, so
        everything it sends because of earlier frames arrives before the ACK.
        """
        opaque = next(_pings).to_bytes(8, "big")
        self.conn.ping(opaque)
        self.flush()
        start = len(self.events)
        self.until(
            lambda: any(
                isinstance(e, PingAckReceived) and e.ping_data == opaque
                for e in self.events[start:]
            )
        )
        return self.events[start:]

    def open(self, path: str, metadata: Iterable[tuple[str, str]] = (), end: bool = False) -> int:
        stream_id = self.conn.get_next_available_stream_id()
        self.calls[stream_id] = Call(stream_id)
        self.conn.send_headers(stream_id, request_headers(path, metadata), end_stream=end)
        self.flush()
        return stream_id

    def send(self, stream_id: int, data: bytes, end: bool = False) -> None:
        """``data`` as one DATA frame (the caller keeps it within frame size and window)."""
        self.conn.send_data(stream_id, data, end_stream=end)
        self.flush()

    def end(self, stream_id: int) -> None:
        self.conn.end_stream(stream_id)
        self.flush()

    def increment_window(self, increment: int, stream_id: int | None = None) -> None:
        self.conn.increment_flow_control_window(increment, stream_id)
        self.flush()

    def wait_end(self, stream_id: int) -> Call:
        call = self.calls[stream_id]
        self.until(lambda: call.ended or call.reset is not None)
        return call

    def call(self, path: str, *messages: bytes, metadata: Iterable[tuple[str, str]] = ()) -> Call:
        """Open a stream, send ``messages`` (one DATA frame each), half-close, wait."""
        stream_id = self.open(path, metadata)
        for message in messages:
            self.send(stream_id, grpc_message(message))
        self.end(stream_id)
        return self.wait_end(stream_id)


# -- a peer that sends anything -------------------------------------------------------------


class RawPeer:
    """Raw bytes out; the server's frames in (hyperframe), header blocks decoded."""

    def __init__(
        self, port: int, settings: Mapping[int, int] | None = None, preface: bool = True
    ) -> None:
        self.sock = connect(port)
        self._buffer = bytearray()
        self.encoder = hpack.Encoder()  # our request blocks: one encoder, in send order
        self.decoder = hpack.Decoder()
        self.closed = False
        if preface:
            pairs = b"".join(struct.pack(">HI", k, v) for k, v in (settings or {}).items())
            self.send(PREFACE + raw_frame(0x4, 0, 0, pairs))

    def send(self, *chunks: bytes | Frame) -> None:
        self.sock.sendall(b"".join(c.serialize() if isinstance(c, Frame) else c for c in chunks))

    def block(self, path: str, metadata: Iterable[tuple[str, str]] = ()) -> bytes:
        return self.encoder.encode(request_headers(path, metadata))

    def close(self) -> None:
        self.sock.close()

    def next_frame(self) -> Frame | None:
        """The next frame from the server, or None once it has closed the connection."""
        while True:
            if len(self._buffer) >= 9:
                frame, length = Frame.parse_frame_header(memoryview(self._buffer[:9]))
                if len(self._buffer) >= 9 + length:
                    frame.parse_body(memoryview(bytes(self._buffer[9 : 9 + length])))
                    del self._buffer[: 9 + length]
                    return frame
            if self.closed:
                assert not self._buffer, f"connection closed inside a frame: {self._buffer!r}"
                return None
            try:
                data = self.sock.recv(65_536)
            except TimeoutError:
                pytest.fail(f"no frame from the server within {TIMEOUT}s")
            except ConnectionResetError:
                data = b""
            if not data:
                self.closed = True
            self._buffer += data

    def frames_until(self, condition: Callable[[Frame], bool]) -> list[Frame]:
        """Frames up to and including the first for which ``condition`` holds."""
        out: list[Frame] = []
        while True:
            frame = self.next_frame()
            if frame is None:
                pytest.fail(f"connection closed; frames so far: {out}")
            out.append(frame)
            if condition(frame):
                return out

    def until_closed(self) -> list[Frame]:
        out = []
        while (frame := self.next_frame()) is not None:
            out.append(frame)
        return out

    def barrier(self) -> list[Frame]:
        """PING; every frame before its ACK (see ``H2Peer.barrier``)."""
        opaque = next(_pings).to_bytes(8, "big")
        self.send(raw_frame(0x6, 0, 0, opaque))
        frames = self.frames_until(
            lambda f: isinstance(f, PingFrame) and "ACK" in f.flags and f.opaque_data == opaque
        )
        return frames[:-1]

    def headers(self, frame: Frame) -> dict[str, str]:
        data: bytes = frame.data  # type: ignore[attr-defined]
        return {k: v for k, v in self.decoder.decode(data)}  # type: ignore[misc]

    def goaway(self) -> GoAwayFrame:
        """Read to the end: the server's last frame must be a GOAWAY, then it closes."""
        frames = self.until_closed()
        assert frames, "closed without a GOAWAY"
        assert isinstance(frames[-1], GoAwayFrame), frames
        return frames[-1]


__all__ = [
    "PREFACE",
    "TIMEOUT",
    "Call",
    "H2Peer",
    "RawPeer",
    "ServedH2",
    "blob",
    "connect",
    "grpc_message",
    "grpc_messages",
    "raw_frame",
    "request_headers",
]
