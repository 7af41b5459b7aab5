"""One HTTP/2 connection carrying gRPC calls, as an asyncio protocol.

Every frame that arrives in one read is handled in that callback and all the
frames it produces leave in one write. Each complete request message is handed
to the method registered for the stream's ``:path``; its return value is sent
back as one response message. A client's END_STREAM ends the call with
``grpc-status: 0``; RST_STREAM (Envoy's normal end of an ext_proc stream) just
forgets the stream.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Callable, Mapping
from typing import Any

import hpack

from extproc.sidecar.h2 import frames as f

log = logging.getLogger("extproc.h2")

Metadata = tuple[tuple[str, str], ...]
Method = Callable[[bytes, Metadata], bytes | None]  # None: no answer to this message

#: Largest request message accepted (gRPC's default receive limit).
MAX_MESSAGE = 4 * 1024 * 1024
#: Our receive windows: per stream, and the connection's after the first update.
STREAM_WINDOW = 1 << 20
CONNECTION_WINDOW = 16 << 20
MAX_STREAMS = 1000
_UNIMPLEMENTED, _INTERNAL, _INVALID, _EXHAUSTED = 12, 13, 3, 8


class RpcError(Exception):
    """Raised by a method to end its call with a gRPC status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ConnectionError_(Exception):
    """A connection-level protocol error: GOAWAY with ``code``, then close."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class Stream:
    __slots__ = (
        "buffer",
        "done",
        "headers_sent",
        "id",
        "metadata",
        "method",
        "pending",
        "pending_trailers",
        "received",
        "remote_closed",
        "send_window",
    )

    def __init__(self, stream_id: int, method: Method | None, metadata: Metadata, window: int):
        self.id = stream_id
        self.method = method
        self.metadata = metadata
        self.buffer = bytearray()
        self.send_window = window
        self.received = 0  # bytes received since our last WINDOW_UPDATE
        self.headers_sent = False
        self.remote_closed = False
        self.done = False  # trailers queued: nothing more will be sent
        self.pending: list[bytes] = []  # DATA payloads waiting for flow-control window
        self.pending_trailers: bytes | None = None


class Connection(asyncio.Protocol):
    """Server side of one HTTP/2 connection; ``routes`` maps ``:path`` to a method."""

    def __init__(self, routes: Mapping[str, Method], on_close: Callable[[Connection], None]):
        self.routes = routes
        self.on_close = on_close
        self.streams: dict[int, Stream] = {}
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._out: list[bytes] = []
        self._preface = False
        self._decoder = hpack.Decoder()
        self._decoder.max_header_list_size = 65_536
        self._block_cache: dict[bytes, tuple[str, Metadata]] = {}
        self._continuation: tuple[int, int, bytearray] | None = None  # stream, flags, block
        self._last_stream = 0
        self._peer_window = f.DEFAULT_WINDOW  # peer's initial stream window
        self._peer_max_frame = f.DEFAULT_MAX_FRAME
        self._send_window = f.DEFAULT_WINDOW  # connection-level, toward the peer
        self._received = 0  # connection bytes since our last WINDOW_UPDATE
        self.going_away = False

    # -- asyncio.Protocol ----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        writer: Any = transport  # uvloop's transports are not asyncio.Transport subclasses
        self.transport = writer
        # Table size 0: the peer's header blocks carry no HPACK state, so equal
        # blocks decode equally and can be cached (see _decode).
        writer.write(
            f.settings(
                {
                    f.SETTINGS_HEADER_TABLE_SIZE: 0,
                    f.SETTINGS_MAX_CONCURRENT_STREAMS: MAX_STREAMS,
                    f.SETTINGS_INITIAL_WINDOW_SIZE: STREAM_WINDOW,
                }
            )
            + f.window_update(0, CONNECTION_WINDOW - f.DEFAULT_WINDOW)
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self.streams.clear()
        self.on_close(self)

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        try:
            offset = 0
            if not self._preface:
                if buffer[: len(f.PREFACE)] != f.PREFACE[: len(buffer)]:
                    raise ConnectionError_(f.PROTOCOL_ERROR, "not an HTTP/2 connection preface")
                if len(buffer) < len(f.PREFACE):
                    return
                self._preface = True
                offset = len(f.PREFACE)
            end = len(buffer)
            while end - offset >= 9:
                length, kind, flags, stream_id = f.parse_header(buffer, offset)
                if length > f.DEFAULT_MAX_FRAME:
                    raise ConnectionError_(f.FRAME_SIZE_ERROR, f"frame of {length} bytes")
                if end - offset - 9 < length:
                    break
                payload = bytes(buffer[offset + 9 : offset + 9 + length])
                offset += 9 + length
                self._frame(kind, flags, stream_id, payload)
            del buffer[:offset]
        except ConnectionError_ as exc:
            log.warning("h2 connection error: %s", exc)
            self._out.append(f.goaway(self._last_stream, exc.code, str(exc).encode()))
            self._flush()
            if self.transport is not None:
                self.transport.close()
            return
        self._flush()

    # -- frames ----------------------------------------------------------------------

    def _frame(self, kind: int, flags: int, stream_id: int, payload: bytes) -> None:
        if self._continuation is not None and kind != f.CONTINUATION:
            raise ConnectionError_(f.PROTOCOL_ERROR, "expected CONTINUATION")
        if kind == f.DATA:
            self._data(flags, stream_id, payload)
        elif kind == f.HEADERS:
            self._headers_frame(flags, stream_id, payload)
        elif kind == f.CONTINUATION:
            self._continuation_frame(flags, stream_id, payload)
        elif kind == f.RST_STREAM:
            self.streams.pop(stream_id, None)
        elif kind == f.SETTINGS:
            self._settings(flags, stream_id, payload)
        elif kind == f.PING:
            if len(payload) != 8 or stream_id:
                raise ConnectionError_(f.FRAME_SIZE_ERROR, "bad PING")
            if not flags & f.ACK:
                self._out.append(f.frame(f.PING, f.ACK, 0, payload))
        elif kind == f.WINDOW_UPDATE:
            self._window_update(stream_id, payload)
        elif kind == f.GOAWAY:
            self.going_away = True
        elif kind == f.PUSH_PROMISE:
            raise ConnectionError_(f.PROTOCOL_ERROR, "a client cannot push")
        # PRIORITY and unknown frame types are ignored, as RFC 9113 requires.

    def _settings(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id:
            raise ConnectionError_(f.PROTOCOL_ERROR, "SETTINGS on a stream")
        if flags & f.ACK:
            return
        if len(payload) % 6:
            raise ConnectionError_(f.FRAME_SIZE_ERROR, "SETTINGS length")
        for i in range(0, len(payload), 6):
            key, value = struct.unpack_from(">HI", payload, i)
            if key == f.SETTINGS_INITIAL_WINDOW_SIZE:
                if value > f.MAX_WINDOW:
                    raise ConnectionError_(f.FLOW_CONTROL_ERROR, "initial window too large")
                delta, self._peer_window = value - self._peer_window, value
                for stream in self.streams.values():
                    stream.send_window += delta
            elif key == f.SETTINGS_MAX_FRAME_SIZE:
                if not f.DEFAULT_MAX_FRAME <= value <= f.MAX_FRAME_LIMIT:
                    raise ConnectionError_(f.PROTOCOL_ERROR, f"MAX_FRAME_SIZE {value}")
                self._peer_max_frame = value
        self._out.append(f.frame(f.SETTINGS, f.ACK, 0))
        for stream in list(self.streams.values()):
            self._drain(stream)

    def _window_update(self, stream_id: int, payload: bytes) -> None:
        if len(payload) != 4:
            raise ConnectionError_(f.FRAME_SIZE_ERROR, "WINDOW_UPDATE length")
        increment = struct.unpack(">I", payload)[0] & 0x7FFFFFFF
        if stream_id == 0:
            if increment == 0:
                raise ConnectionError_(f.PROTOCOL_ERROR, "zero WINDOW_UPDATE")
            self._send_window += increment
            for each in list(self.streams.values()):
                self._drain(each)
            return
        stream = self.streams.get(stream_id)
        if stream is not None:
            stream.send_window += increment
            self._drain(stream)

    def _headers_frame(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id == 0 or stream_id % 2 == 0:
            raise ConnectionError_(f.PROTOCOL_ERROR, f"HEADERS on stream {stream_id}")
        start, end = 0, len(payload)
        if flags & f.PADDED:
            if not payload:
                raise ConnectionError_(f.PROTOCOL_ERROR, "PADDED HEADERS without pad length")
            start, end = 1, end - payload[0]
        if flags & f.PRIORITY_FLAG:
            start += 5
        if start > end:
            raise ConnectionError_(f.PROTOCOL_ERROR, "padding larger than the frame")
        block = bytearray(payload[start:end])
        if flags & f.END_HEADERS:
            self._header_block(stream_id, flags, bytes(block))
        else:
            self._continuation = (stream_id, flags, block)

    def _continuation_frame(self, flags: int, stream_id: int, payload: bytes) -> None:
        if self._continuation is None or self._continuation[0] != stream_id:
            raise ConnectionError_(f.PROTOCOL_ERROR, "unexpected CONTINUATION")
        _, first_flags, block = self._continuation
        block += payload
        if len(block) > 65_536:
            raise ConnectionError_(f.PROTOCOL_ERROR, "header block too large")
        if flags & f.END_HEADERS:
            self._continuation = None
            self._header_block(stream_id, first_flags, bytes(block))

    def _header_block(self, stream_id: int, flags: int, block: bytes) -> None:
        path, metadata = self._decode(block)  # always decode: HPACK state must advance
        stream = self.streams.get(stream_id)
        if stream is not None or stream_id <= self._last_stream:
            if stream is not None and flags & f.END_STREAM:  # request trailers
                self._remote_end(stream)
            return
        self._last_stream = stream_id
        if self.going_away or len(self.streams) >= MAX_STREAMS:
            self._out.append(f.rst_stream(stream_id, f.REFUSED_STREAM))
            return
        stream = Stream(stream_id, self.routes.get(path), metadata, self._peer_window)
        self.streams[stream_id] = stream
        stream.remote_closed = bool(flags & f.END_STREAM)
        if stream.method is None:
            self._finish(stream, _UNIMPLEMENTED, f"unknown method {path}")
        elif stream.remote_closed:
            self._remote_end(stream)

    def _decode(self, block: bytes) -> tuple[str, Metadata]:
        # With a zero-size (so empty) table before and after, a block carries no HPACK
        # state: equal bytes decode equally. From any other table the same bytes may
        # add entries or mean something else, so they must go through the decoder.
        stateless = self._decoder.header_table_size == 0
        cached = self._block_cache.get(block) if stateless else None
        if cached is not None:
            return cached
        try:
            headers = self._decoder.decode(block, raw=True)
        except hpack.HPACKError as exc:
            raise ConnectionError_(f.COMPRESSION_ERROR, f"bad header block: {exc}") from None
        path = ""
        metadata = []
        for name, value in headers:
            key, text = name.decode("latin-1"), value.decode("latin-1")
            if key == ":path":
                path = text
            elif not key.startswith(":"):
                metadata.append((key, text))
        result = (path, tuple(metadata))
        if stateless and self._decoder.header_table_size == 0 and len(self._block_cache) < 256:
            self._block_cache[block] = result
        return result

    def _data(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id == 0:
            raise ConnectionError_(f.PROTOCOL_ERROR, "DATA on stream 0")
        self._received += len(payload)
        if self._received >= CONNECTION_WINDOW // 2:
            self._out.append(f.window_update(0, self._received))
            self._received = 0
        stream = self.streams.get(stream_id)
        if stream is None or stream.done:
            return  # a stream we already ended or forgot: drop its data
        data = payload
        if flags & f.PADDED:
            if not payload or payload[0] >= len(payload):
                raise ConnectionError_(f.PROTOCOL_ERROR, "bad DATA padding")
            data = payload[1 : len(payload) - payload[0]]
        stream.received += len(payload)
        if stream.received >= STREAM_WINDOW // 2 and not flags & f.END_STREAM:
            self._out.append(f.window_update(stream_id, stream.received))
            stream.received = 0
        stream.buffer += data
        if flags & f.END_STREAM:  # known before a method may end the call
            stream.remote_closed = True
        self._messages(stream)
        if flags & f.END_STREAM and not stream.done:
            self._remote_end(stream)

    def _messages(self, stream: Stream) -> None:
        buffer = stream.buffer
        while len(buffer) >= 5 and not stream.done:
            compressed = buffer[0]
            size = int.from_bytes(buffer[1:5], "big")
            if size > MAX_MESSAGE:
                self._finish(stream, _EXHAUSTED, f"message of {size} bytes is over the limit")
                return
            if len(buffer) < 5 + size:
                return
            message = bytes(buffer[5 : 5 + size])
            del buffer[: 5 + size]
            if compressed:
                self._finish(stream, _UNIMPLEMENTED, "compressed messages are not supported")
                return
            assert stream.method is not None
            try:
                answer = stream.method(message, stream.metadata)
            except RpcError as exc:
                self._finish(stream, exc.status, exc.message)
                return
            except Exception:
                log.exception("method failed on stream %d", stream.id)
                self._finish(stream, _INTERNAL, "internal error")
                return
            if answer is not None:
                self._send(stream, f.grpc_message(answer))

    # -- sending ---------------------------------------------------------------------

    def _send(self, stream: Stream, data: bytes) -> None:
        if not stream.headers_sent:
            stream.headers_sent = True
            self._out.append(f.frame(f.HEADERS, f.END_HEADERS, stream.id, f.RESPONSE_HEADERS))
        stream.pending.append(data)
        self._drain(stream)

    def _drain(self, stream: Stream) -> None:
        """Send what the flow-control windows allow; trailers once nothing is pending."""
        out = self._out
        while stream.pending:
            chunk = stream.pending[0]
            room = min(self._send_window, stream.send_window, self._peer_max_frame)
            if room <= 0:
                return
            piece, rest = chunk[:room], chunk[room:]
            out.append(f.frame(f.DATA, 0, stream.id, piece))
            self._send_window -= len(piece)
            stream.send_window -= len(piece)
            if rest:
                stream.pending[0] = rest
            else:
                stream.pending.pop(0)
        if stream.pending_trailers is not None:
            out.append(
                f.frame(f.HEADERS, f.END_HEADERS | f.END_STREAM, stream.id, stream.pending_trailers)
            )
            stream.pending_trailers = None
            if not stream.remote_closed:  # we are done; the client may stop sending
                out.append(f.rst_stream(stream.id, f.NO_ERROR))
            self.streams.pop(stream.id, None)

    def _finish(self, stream: Stream, status: int, message: str = "") -> None:
        """End the call with ``status`` (trailers, or trailers-only if nothing was sent)."""
        stream.done = True
        if stream.headers_sent:
            stream.pending_trailers = f.trailers(status, message)
        else:
            stream.headers_sent = True
            stream.pending_trailers = f.trailers_only(status, message)
        self._drain(stream)

    def _remote_end(self, stream: Stream) -> None:
        stream.remote_closed = True
        if not stream.done:
            if stream.buffer:
                self._finish(stream, _INVALID, "truncated message at end of stream")
            else:
                self._finish(stream, 0)

    def _flush(self) -> None:
        if self._out and self.transport is not None:
            self.transport.write(b"".join(self._out))
        self._out.clear()

    # -- shutdown --------------------------------------------------------------------

    def goaway(self) -> None:
        """Tell the peer no new streams will be accepted; open ones may finish."""
        if not self.going_away and self.transport is not None:
            self.going_away = True
            self.transport.write(f.goaway(self._last_stream, f.NO_ERROR))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
