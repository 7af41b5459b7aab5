"""The sending half of a connection: answers, trailers and the peer's windows.

Work is proportional to what is sent, never to the number of open streams: a
stream whose answer waits only for the *connection* window sits in ``_waiting``
(insertion-ordered), and a connection-level WINDOW_UPDATE drains from its head
until the window is spent. A stream waiting for its own window leaves the queue
and is drained by its own WINDOW_UPDATE.
"""

from __future__ import annotations

from extproc.sidecar.h2 import frames as f
from extproc.sidecar.h2.stream import Stream

_INVALID = 3


class Sender:
    streams: dict[int, Stream]
    _out: list[bytes]
    _send_window: int  # connection-level, toward the peer
    _peer_max_frame: int
    _waiting: dict[int, Stream]  # answers blocked only by the connection window

    def _forget(self, stream: Stream) -> None:
        raise NotImplementedError

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
            room = min(self._send_window, stream.send_window, self._peer_max_frame)
            if room <= 0:
                if self._send_window <= 0 < stream.send_window:
                    self._waiting[stream.id] = stream
                return
            chunk = stream.pending[0]
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
                f.header_frames(
                    stream.id, f.END_STREAM, stream.pending_trailers, self._peer_max_frame
                )
            )
            stream.pending_trailers = None
            if not stream.remote_closed:  # we are done; the client may stop sending
                out.append(f.rst_stream(stream.id, f.NO_ERROR))
            self._forget(stream)

    def _drain_waiting(self) -> None:
        """The connection window grew: serve the streams queued for it, oldest first."""
        waiting = self._waiting
        while waiting and self._send_window > 0:
            stream_id = next(iter(waiting))
            self._drain(waiting.pop(stream_id))

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
