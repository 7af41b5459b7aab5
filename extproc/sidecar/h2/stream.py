"""One gRPC call on an HTTP/2 stream, and the errors that end a call or a connection."""

from __future__ import annotations

from collections.abc import Callable

Metadata = tuple[tuple[str, str], ...]
Method = Callable[[bytes, Metadata], bytes | None]  # None: no answer to this message


class RpcError(Exception):
    """Raised by a method to end its call with a gRPC status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ConnectionError_(Exception):
    """A connection-level error: GOAWAY with ``code``, then close.

    The message is ours (it goes into the GOAWAY's debug data and a throttled log
    line), never bytes the peer chose.
    """

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class Stream:
    __slots__ = (
        "buffer",
        "dispatched",
        "done",
        "headers_sent",
        "id",
        "metadata",
        "method",
        "pending",
        "pending_trailers",
        "received",
        "recv_window",
        "remote_closed",
        "retained",
        "send_window",
    )

    def __init__(
        self,
        stream_id: int,
        method: Method | None,
        metadata: Metadata,
        retained: int,
        send_window: int,
        recv_window: int,
    ) -> None:
        self.id = stream_id
        self.method = method
        self.metadata = metadata
        self.retained = retained  # bytes of decoded metadata this stream holds
        self.buffer = bytearray()
        self.send_window = send_window
        self.recv_window = recv_window  # what the peer may still send on this stream
        self.received = 0  # bytes received since our last WINDOW_UPDATE for it
        self.dispatched = False  # a request message reached the method
        self.headers_sent = False
        self.remote_closed = False
        self.done = False  # trailers queued: nothing more will be sent
        self.pending: list[bytes] = []  # DATA payloads waiting for flow-control window
        self.pending_trailers: bytes | None = None
