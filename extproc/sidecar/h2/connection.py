"""One HTTP/2 connection carrying gRPC calls, as an asyncio protocol.

The frames of each read are handled in that callback and what they produce leaves
in one write. Each complete request message is handed to the method registered
for the stream's ``:path``; its return value is sent back as one response
message. A client's END_STREAM ends the call with ``grpc-status: 0``; RST_STREAM
(Envoy's normal end of an ext_proc stream) just forgets the stream.

Defences (limits in ``H2Limits``, see docs/http2-hardening.md): reading stops
while our output queue is over its high-water mark or after ``work_per_pass``
units of work in one loop pass (the rest waits for the next pass); receive
windows are enforced; flood-prone frames draw from token buckets and an empty
bucket ends the connection with GOAWAY ENHANCE_YOUR_CALM; memory per connection
is bounded (buffered request bytes, header blocks, retained metadata, caches).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

from extproc.h2_limits import H2Limits
from extproc.sidecar.h2 import frames as f
from extproc.sidecar.h2.frame_rules import FrameRules
from extproc.sidecar.h2.guards import Bucket, ThrottledLog
from extproc.sidecar.h2.header_decoder import HeaderDecoder
from extproc.sidecar.h2.stream import ConnectionError_, Metadata, Method, RpcError, Stream

__all__ = ["Connection", "ConnectionError_", "Metadata", "Method", "RpcError"]

log = logging.getLogger("extproc.h2")

_UNIMPLEMENTED, _INTERNAL, _EXHAUSTED = 12, 13, 8
_WRITE, _WORK = 1, 2  # why reading is paused
METHOD_COST = 10  # work units of one request message handed to a method


class Connection(FrameRules, asyncio.Protocol):
    """Server side of one HTTP/2 connection; ``routes`` maps ``:path`` to a method.

    ``metadata``: the metadata names methods read (None: all of them).
    """

    def __init__(
        self,
        routes: Mapping[str, Method],
        on_close: Callable[[Connection], None],
        limits: H2Limits,
        warnings: ThrottledLog,
        metadata: frozenset[str] | None = None,
    ) -> None:
        self.routes = routes
        self.on_close = on_close
        self.limits = limits
        self.warnings = warnings
        self.streams: dict[int, Stream] = {}
        self.transport: Any = None  # uvloop's transports are not asyncio.Transport subclasses
        self.loop = asyncio.get_running_loop()
        now = self.loop.time()
        self.opened_at = self.last_active = now
        self.handshaken = False  # preface and the peer's first SETTINGS received
        self.closing = False
        self.going_away = False
        self._buffer = bytearray()
        self._out: list[bytes] = []
        self._preface = False
        self._headers = HeaderDecoder(limits.max_header_list, metadata, routes)
        self._continuation: tuple[int, int, bytearray, int] | None = None  # id, flags, block, n
        self._last_stream = 0
        self._peer_window = f.DEFAULT_WINDOW  # peer's initial stream window
        self._peer_max_frame = f.DEFAULT_MAX_FRAME
        self._send_window = f.DEFAULT_WINDOW
        self._waiting: dict[int, Stream] = {}
        self._recv_window = limits.connection_window  # what the peer may still send
        self._credit = 0  # connection bytes consumed since our last WINDOW_UPDATE
        self._buffered = 0  # request bytes held in stream buffers
        self._withheld = 0  # credit held back while over max_buffered
        self._retained = 0  # decoded metadata bytes held by open streams
        self._acked_settings = False
        self._paused = 0
        self._pass_time = -1.0
        self._spent = 0
        self._now = now
        self._ping = Bucket(limits.ping_flood, now)
        self._settings_bucket = Bucket(limits.settings_flood, now)
        self._resets = Bucket(limits.reset_flood, now)
        self._empty = Bucket(limits.empty_flood, now)
        self._updates = Bucket(limits.window_update_flood, now)

    # -- asyncio.Protocol ----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        writer: Any = transport
        self.transport = writer
        if self.closing:  # refused by the server (too many connections)
            writer.close()
            return
        high = self.limits.write_high_water
        writer.set_write_buffer_limits(high=high, low=high // 4)
        # Table size 0: the peer's header blocks carry no HPACK state (see header_decoder).
        writer.write(
            f.settings(
                {
                    f.SETTINGS_HEADER_TABLE_SIZE: 0,
                    f.SETTINGS_ENABLE_PUSH: 0,
                    f.SETTINGS_MAX_CONCURRENT_STREAMS: self.limits.max_concurrent_streams,
                    f.SETTINGS_INITIAL_WINDOW_SIZE: self.limits.stream_window,
                    f.SETTINGS_MAX_HEADER_LIST_SIZE: self.limits.max_header_list,
                }
            )
            + f.window_update(0, self.limits.connection_window - f.DEFAULT_WINDOW)
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.streams.clear()
        self._waiting.clear()
        self._buffer.clear()
        self.on_close(self)

    def eof_received(self) -> bool:
        """The peer will send nothing more: like grpc core, end the connection rather
        than work through what it left queued (its answers could not matter)."""
        self.closing = True
        self._buffer.clear()
        return False  # the transport closes itself

    def pause_writing(self) -> None:
        self._pause(_WRITE)

    def resume_writing(self) -> None:
        self._resume(_WRITE)
        if self._paused & _WORK or self._buffer:  # frames left when writing paused us
            self.loop.call_soon(self._next_pass)

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        self._buffer += data
        self._pump()

    # -- reading within budgets ----------------------------------------------------

    def _pause(self, reason: int) -> None:
        if not self._paused and not self.closing:
            self.transport.pause_reading()
        self._paused |= reason

    def _resume(self, reason: int) -> None:
        was = self._paused
        self._paused &= ~reason
        if was and not self._paused and not self.closing:
            self.transport.resume_reading()

    def _next_pass(self) -> None:
        if self.closing or self._paused & _WRITE:
            return
        self._spent = 0
        self._pass_time = self.loop.time()
        self._pump()

    def _pump(self) -> None:
        """Handle the buffered frames until the pass's work budget is spent."""
        now = self.loop.time()
        self._now = self.last_active = now
        if now != self._pass_time:  # uvloop's clock ticks once per loop pass
            self._pass_time, self._spent = now, 0
        buffer = self._buffer
        budget = self.limits.work_per_pass
        offset = 0
        try:
            if not self._preface:
                offset = self._read_preface(buffer)
                if not offset:
                    return
            end = len(buffer)
            while end - offset >= 9:
                if self._spent >= budget or self._paused & _WRITE:
                    break
                length, kind, flags, stream_id = f.parse_header(buffer, offset)
                if length > f.DEFAULT_MAX_FRAME:
                    raise ConnectionError_(f.FRAME_SIZE_ERROR, f"frame of {length} bytes")
                if end - offset - 9 < length:
                    break
                payload = bytes(buffer[offset + 9 : offset + 9 + length])
                offset += 9 + length
                self._spent += 1
                self._frame(kind, flags, stream_id, payload)
            del buffer[:offset]
        except ConnectionError_ as exc:
            self._connection_error(exc)
            return
        self._flush()
        if self._spent >= budget and len(buffer) >= 9:
            self._pause(_WORK)
            self.loop.call_soon(self._next_pass)
        elif self._paused & _WORK:
            self._resume(_WORK)

    def _read_preface(self, buffer: bytearray) -> int:
        if buffer[: len(f.PREFACE)] != f.PREFACE[: len(buffer)]:
            raise ConnectionError_(f.PROTOCOL_ERROR, "not an HTTP/2 connection preface")
        if len(buffer) < len(f.PREFACE) + 9:
            return 0
        _, kind, flags, _ = f.parse_header(buffer, len(f.PREFACE))
        if kind != f.SETTINGS or flags & f.ACK:
            raise ConnectionError_(f.PROTOCOL_ERROR, "the preface must be followed by SETTINGS")
        self._preface = True
        return len(f.PREFACE)

    def _connection_error(self, exc: ConnectionError_) -> None:
        self.warnings.warn(self._now, f"connection error {exc.code:#x}", str(exc))
        self._out.append(f.goaway(self._last_stream, exc.code, str(exc).encode()))
        self._flush()
        self.closing = True
        self._buffer.clear()
        if self.transport is not None:
            self.transport.close()

    def _flood(self, bucket: Bucket, what: str) -> None:
        if not bucket.take(self._now):
            raise ConnectionError_(f.ENHANCE_YOUR_CALM, f"{what} flood")

    # -- streams -------------------------------------------------------------------

    def _open(self, stream_id: int, flags: int, path: str, metadata: Metadata, size: int) -> None:
        limits = self.limits
        self._last_stream = stream_id
        if (
            self.going_away
            or len(self.streams) >= limits.max_concurrent_streams
            or self._retained + size > limits.retained_headers
        ):
            self._flood(self._resets, "refused stream")
            self._out.append(f.rst_stream(stream_id, f.REFUSED_STREAM))
            return
        method = self.routes.get(path)
        stream = Stream(stream_id, method, metadata, size, self._peer_window, limits.stream_window)
        self.streams[stream_id] = stream
        self._retained += size
        stream.remote_closed = bool(flags & f.END_STREAM)
        if method is None:
            self._finish(stream, _UNIMPLEMENTED, "unknown method")  # never echo the path
        elif stream.remote_closed:
            self._remote_end(stream)

    def _forget(self, stream: Stream) -> None:
        if self.streams.pop(stream.id, None) is None:
            return
        self._waiting.pop(stream.id, None)
        self._retained -= stream.retained
        if stream.buffer:
            self._consumed(len(stream.buffer))
            stream.buffer.clear()

    def _stream_error(self, stream: Stream, code: int) -> None:
        self._out.append(f.rst_stream(stream.id, code))
        self._forget(stream)

    # -- request messages and receive credit ---------------------------------------

    def _consumed(self, size: int) -> None:
        """``size`` buffered bytes left the connection: credit held back may go now."""
        self._buffered -= size
        if self._withheld and self._buffered <= self.limits.max_buffered:
            self._give_credit(self._withheld)
            self._withheld = 0

    def _give_credit(self, size: int) -> None:
        self._credit += size
        if self._credit >= self.limits.connection_window // 2:
            self._out.append(f.window_update(0, self._credit))
            self._recv_window += self._credit
            self._credit = 0

    def _messages(self, stream: Stream) -> None:
        buffer = stream.buffer
        while len(buffer) >= 5 and not stream.done:
            compressed = buffer[0]
            size = int.from_bytes(buffer[1:5], "big")
            if size > self.limits.max_message:
                self._finish(stream, _EXHAUSTED, f"message of {size} bytes is over the limit")
                return
            if len(buffer) < 5 + size:
                return
            message = bytes(buffer[5 : 5 + size])
            del buffer[: 5 + size]
            self._consumed(5 + size)
            if compressed:
                self._finish(stream, _UNIMPLEMENTED, "compressed messages are not supported")
                return
            assert stream.method is not None
            stream.dispatched = True
            self._spent += METHOD_COST
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

    def _flush(self) -> None:
        if self._out and self.transport is not None:
            self.transport.write(b"".join(self._out))
        self._out.clear()

    # -- timers and shutdown (driven by the server) --------------------------------

    def expired(self, now: float) -> str:
        """Why this connection should be closed now ('' = it may stay)."""
        limits = self.limits
        if not self.handshaken and now - self.opened_at > limits.handshake_timeout:
            return "handshake timeout"
        if not self.streams and now - self.last_active > limits.idle_timeout:
            return "idle timeout"
        return ""

    def goaway(self) -> None:
        """Tell the peer no new streams will be accepted; open ones may finish."""
        if not self.going_away and not self.closing and self.transport is not None:
            self.going_away = True
            self.transport.write(f.goaway(self._last_stream, f.NO_ERROR))

    def close(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.close()

    def queued_bytes(self) -> int:
        """Output waiting in the transport, plus input not handled yet."""
        if self.transport is None:
            return 0
        return int(self.transport.get_write_buffer_size()) + len(self._buffer)

    def held_bytes(self) -> int:
        """Request bytes and metadata this connection holds for its streams."""
        return self._buffered + self._retained
