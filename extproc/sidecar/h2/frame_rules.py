"""What each received frame means, with RFC 9113's MUSTs and the flood meters.

A mixin of ``Connection`` (which owns the state declared below): connection errors
raise ``ConnectionError_``; stream errors answer RST_STREAM and forget the stream.
"""

from __future__ import annotations

import struct

from extproc.h2_limits import H2Limits
from extproc.sidecar.h2 import frames as f
from extproc.sidecar.h2.guards import Bucket
from extproc.sidecar.h2.header_decoder import HeaderDecoder
from extproc.sidecar.h2.sender import Sender
from extproc.sidecar.h2.stream import ConnectionError_, Metadata, Stream

_ID = struct.Struct(">I")


class FrameRules(Sender):
    limits: H2Limits
    handshaken: bool
    going_away: bool
    _headers: HeaderDecoder
    _continuation: tuple[int, int, bytearray, int] | None
    _last_stream: int
    _peer_window: int
    _recv_window: int
    _buffered: int
    _withheld: int
    _acked_settings: bool
    _spent: int
    _ping: Bucket
    _settings_bucket: Bucket
    _resets: Bucket
    _empty: Bucket
    _updates: Bucket

    def _flood(self, bucket: Bucket, what: str) -> None:
        raise NotImplementedError

    def _open(self, stream_id: int, flags: int, path: str, metadata: Metadata, size: int) -> None:
        raise NotImplementedError

    def _stream_error(self, stream: Stream, code: int) -> None:
        raise NotImplementedError

    def _give_credit(self, size: int) -> None:
        raise NotImplementedError

    def _messages(self, stream: Stream) -> None:
        raise NotImplementedError

    def _frame(self, kind: int, flags: int, stream_id: int, payload: bytes) -> None:
        if self._continuation is not None and kind != f.CONTINUATION:
            raise ConnectionError_(f.PROTOCOL_ERROR, "expected CONTINUATION")
        if kind == f.DATA:
            self._data(flags, stream_id, payload)
        elif kind == f.HEADERS:
            self._headers_frame(flags, stream_id, payload)
        elif kind == f.RST_STREAM:
            self._rst_stream(stream_id, payload)
        elif kind == f.WINDOW_UPDATE:
            self._window_update(stream_id, payload)
        elif kind == f.CONTINUATION:
            self._continuation_frame(flags, stream_id, payload)
        elif kind == f.SETTINGS:
            self._settings(flags, stream_id, payload)
        elif kind == f.PING:
            self._ping_frame(flags, stream_id, payload)
        elif kind == f.GOAWAY:
            if stream_id:
                raise ConnectionError_(f.PROTOCOL_ERROR, "GOAWAY on a stream")
            self.going_away = True
        elif kind == f.PUSH_PROMISE:
            raise ConnectionError_(f.PROTOCOL_ERROR, "a client cannot push")
        elif kind == f.PRIORITY:
            self._priority(stream_id, payload)
        else:  # unknown frame types are ignored, as RFC 9113 requires, but not for free
            self._flood(self._empty, "empty frame")

    # -- control frames ----------------------------------------------------------------

    def _ping_frame(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id:
            raise ConnectionError_(f.PROTOCOL_ERROR, "PING on a stream")
        if len(payload) != 8:
            raise ConnectionError_(f.FRAME_SIZE_ERROR, "PING length")
        self._flood(self._ping, "PING")
        if not flags & f.ACK:
            self._out.append(f.frame(f.PING, f.ACK, 0, payload))

    def _priority(self, stream_id: int, payload: bytes) -> None:
        if not stream_id:
            raise ConnectionError_(f.PROTOCOL_ERROR, "PRIORITY on stream 0")
        self._flood(self._empty, "empty frame")
        if len(payload) != 5:
            stream = self.streams.get(stream_id)
            if stream is not None:
                self._stream_error(stream, f.FRAME_SIZE_ERROR)
            else:
                self._out.append(f.rst_stream(stream_id, f.FRAME_SIZE_ERROR))

    def _settings(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id:
            raise ConnectionError_(f.PROTOCOL_ERROR, "SETTINGS on a stream")
        if flags & f.ACK:
            if payload:
                raise ConnectionError_(f.FRAME_SIZE_ERROR, "SETTINGS ACK with a payload")
            self._flood(self._settings_bucket, "SETTINGS")
            if not self._acked_settings:
                self._acked_settings = True
                self._headers.settings_acked()
            return
        if len(payload) % 6:
            raise ConnectionError_(f.FRAME_SIZE_ERROR, "SETTINGS length")
        self._flood(self._settings_bucket, "SETTINGS")
        self.handshaken = True
        grown = False
        for i in range(0, len(payload), 6):
            key, value = struct.unpack_from(">HI", payload, i)
            if key == f.SETTINGS_INITIAL_WINDOW_SIZE:
                grown = self._initial_window(value) or grown
            elif key == f.SETTINGS_MAX_FRAME_SIZE:
                if not f.DEFAULT_MAX_FRAME <= value <= f.MAX_FRAME_LIMIT:
                    raise ConnectionError_(f.PROTOCOL_ERROR, f"MAX_FRAME_SIZE {value}")
                self._peer_max_frame = value
            elif key == f.SETTINGS_ENABLE_PUSH and value > 1:
                raise ConnectionError_(f.PROTOCOL_ERROR, f"ENABLE_PUSH {value}")
        self._out.append(f.frame(f.SETTINGS, f.ACK, 0))
        if grown:
            for stream in list(self.streams.values()):
                if stream.pending:
                    self._drain(stream)

    def _initial_window(self, value: int) -> bool:
        """Apply a new initial stream window to every open stream (RFC 9113 6.9.2).

        The one walk over the open streams, paid only when the value changes, and
        SETTINGS frames are metered: a flood of them ends the connection first.
        """
        if value > f.MAX_WINDOW:
            raise ConnectionError_(f.FLOW_CONTROL_ERROR, "initial window too large")
        delta, self._peer_window = value - self._peer_window, value
        if not delta:
            return False
        for stream in self.streams.values():
            stream.send_window += delta
            if stream.send_window > f.MAX_WINDOW:
                raise ConnectionError_(f.FLOW_CONTROL_ERROR, "stream window over 2^31-1")
        return delta > 0

    def _window_update(self, stream_id: int, payload: bytes) -> None:
        if len(payload) != 4:
            raise ConnectionError_(f.FRAME_SIZE_ERROR, "WINDOW_UPDATE length")
        self._flood(self._updates, "WINDOW_UPDATE")
        increment = _ID.unpack(payload)[0] & 0x7FFFFFFF
        if stream_id == 0:
            if increment == 0:
                raise ConnectionError_(f.PROTOCOL_ERROR, "zero WINDOW_UPDATE")
            self._send_window += increment
            if self._send_window > f.MAX_WINDOW:
                raise ConnectionError_(f.FLOW_CONTROL_ERROR, "connection window over 2^31-1")
            self._drain_waiting()
            return
        stream = self.streams.get(stream_id)
        if stream is None:
            if stream_id > self._last_stream:
                raise ConnectionError_(f.PROTOCOL_ERROR, "WINDOW_UPDATE on an idle stream")
            return  # a closed stream: allowed for a while after it closed
        if increment == 0:
            self._stream_error(stream, f.PROTOCOL_ERROR)
            return
        stream.send_window += increment
        if stream.send_window > f.MAX_WINDOW:
            self._stream_error(stream, f.FLOW_CONTROL_ERROR)
            return
        self._drain(stream)

    def _rst_stream(self, stream_id: int, payload: bytes) -> None:
        if len(payload) != 4:
            raise ConnectionError_(f.FRAME_SIZE_ERROR, "RST_STREAM length")
        if stream_id == 0:
            raise ConnectionError_(f.PROTOCOL_ERROR, "RST_STREAM on stream 0")
        if stream_id > self._last_stream:
            raise ConnectionError_(f.PROTOCOL_ERROR, "RST_STREAM on an idle stream")
        stream = self.streams.get(stream_id)
        if stream is None:
            self._flood(self._empty, "empty frame")  # a stream already gone
            return
        if not stream.dispatched:  # reset before doing anything for anyone: rapid reset
            self._flood(self._resets, "stream reset")
        self._forget(stream)

    def _forget(self, stream: Stream) -> None:
        raise NotImplementedError

    # -- header blocks -----------------------------------------------------------------

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
            self._continuation = (stream_id, flags, block, 0)

    def _continuation_frame(self, flags: int, stream_id: int, payload: bytes) -> None:
        if self._continuation is None or self._continuation[0] != stream_id:
            raise ConnectionError_(f.PROTOCOL_ERROR, "unexpected CONTINUATION")
        _, first_flags, block, count = self._continuation
        if count >= self.limits.max_continuations:
            raise ConnectionError_(f.ENHANCE_YOUR_CALM, "too many CONTINUATION frames")
        if not payload and not flags & f.END_HEADERS:
            self._flood(self._empty, "empty frame")
        block += payload
        if len(block) > self.limits.max_header_list:
            raise ConnectionError_(f.ENHANCE_YOUR_CALM, "header block over the limit")
        if flags & f.END_HEADERS:
            self._continuation = None
            self._header_block(stream_id, first_flags, bytes(block))
        else:
            self._continuation = (stream_id, first_flags, block, count + 1)

    def _header_block(self, stream_id: int, flags: int, block: bytes) -> None:
        path, metadata, size = self._headers.decode(block)  # always: HPACK state advances
        self._spent += self._headers.work
        stream = self.streams.get(stream_id)
        if stream is not None:
            if stream.remote_closed:
                self._stream_error(stream, f.STREAM_CLOSED)
            elif not flags & f.END_STREAM:  # a second block must be trailers
                self._stream_error(stream, f.PROTOCOL_ERROR)
            else:
                self._remote_end(stream)
            return
        if stream_id <= self._last_stream:
            if not flags & f.END_STREAM:  # not trailers: a new stream with an old id
                raise ConnectionError_(f.PROTOCOL_ERROR, "stream id not increasing")
            self._flood(self._empty, "empty frame")  # trailers of a stream already gone
            return
        self._open(stream_id, flags, path, metadata, size)

    # -- DATA and receive windows ------------------------------------------------------

    def _data(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id == 0:
            raise ConnectionError_(f.PROTOCOL_ERROR, "DATA on stream 0")
        length = len(payload)
        if length > self._recv_window:
            raise ConnectionError_(f.FLOW_CONTROL_ERROR, "DATA over the connection window")
        self._recv_window -= length
        stream = self.streams.get(stream_id)
        if stream is None:
            if stream_id > self._last_stream:
                raise ConnectionError_(f.PROTOCOL_ERROR, "DATA on an idle stream")
            self._give_credit(length)
            self._flood(self._empty, "empty frame")  # a stream already gone
            return
        if stream.remote_closed:
            self._give_credit(length)
            self._stream_error(stream, f.STREAM_CLOSED)
            return
        if length > stream.recv_window:
            self._give_credit(length)
            self._stream_error(stream, f.FLOW_CONTROL_ERROR)
            return
        stream.recv_window -= length
        data = payload
        if flags & f.PADDED:
            if not payload or payload[0] >= length:
                raise ConnectionError_(f.PROTOCOL_ERROR, "bad DATA padding")
            data = payload[1 : length - payload[0]]
        end = flags & f.END_STREAM
        if not data and not end:
            self._flood(self._empty, "empty frame")
        if stream.done:  # we already answered: nothing more is read
            self._give_credit(length)
        else:
            kept = len(data)
            self._buffered += kept
            if self._buffered > self.limits.max_buffered:
                self._withheld += kept
                self._give_credit(length - kept)
            else:
                self._give_credit(length)
            stream.buffer += data
        stream.received += length
        if stream.received >= self.limits.stream_window // 2 and not end:
            self._out.append(f.window_update(stream_id, stream.received))
            stream.recv_window += stream.received
            stream.received = 0
        if end:  # known before a method may end the call
            stream.remote_closed = True
        if not stream.done:
            self._messages(stream)
        if end and not stream.done:
            self._remote_end(stream)
