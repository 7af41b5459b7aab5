"""HTTP/2 frame and gRPC message encoding (RFC 9113, RFC 7541, gRPC over HTTP/2).

Header blocks we *send* use only the static table and literals without indexing,
so they do not depend on any HPACK state and can be built once and reused.
"""

from __future__ import annotations

import struct

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS = 0x0, 0x1, 0x2, 0x3, 0x4
PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 0x5, 0x6, 0x7, 0x8, 0x9

END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20

SETTINGS_HEADER_TABLE_SIZE = 0x1
SETTINGS_ENABLE_PUSH = 0x2
SETTINGS_MAX_CONCURRENT_STREAMS = 0x3
SETTINGS_INITIAL_WINDOW_SIZE = 0x4
SETTINGS_MAX_FRAME_SIZE = 0x5
SETTINGS_MAX_HEADER_LIST_SIZE = 0x6

NO_ERROR, PROTOCOL_ERROR, FLOW_CONTROL_ERROR, STREAM_CLOSED = 0x0, 0x1, 0x3, 0x5
FRAME_SIZE_ERROR, REFUSED_STREAM, CANCEL, COMPRESSION_ERROR = 0x6, 0x7, 0x8, 0x9
ENHANCE_YOUR_CALM = 0xB

MAX_WINDOW = 2**31 - 1
DEFAULT_WINDOW = 65_535
DEFAULT_MAX_FRAME = 16_384
MAX_FRAME_LIMIT = 2**24 - 1  # largest SETTINGS_MAX_FRAME_SIZE a peer may announce

_HEADER = struct.Struct(">BHBBI")  # 24-bit length split as (high byte, low 16 bits)


def frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    """One frame: 9-byte header + payload."""
    size = len(payload)
    return _HEADER.pack(size >> 16, size & 0xFFFF, kind, flags, stream_id) + payload


def parse_header(buffer: bytes | bytearray, offset: int) -> tuple[int, int, int, int]:
    """(length, type, flags, stream id) of the frame header at ``offset``."""
    high, low, kind, flags, stream_id = _HEADER.unpack_from(buffer, offset)
    return (high << 16) | low, kind, flags, stream_id & 0x7FFFFFFF


def header_frames(stream_id: int, flags: int, block: bytes, max_frame: int) -> bytes:
    """A header block as HEADERS (+ CONTINUATION frames), each within ``max_frame``.

    ``flags`` may hold END_STREAM; END_HEADERS goes on the last frame.
    """
    if len(block) <= max_frame:
        return frame(HEADERS, flags | END_HEADERS, stream_id, block)
    pieces = [block[i : i + max_frame] for i in range(0, len(block), max_frame)]
    out = [frame(HEADERS, flags & END_STREAM, stream_id, pieces[0])]
    out += [frame(CONTINUATION, 0, stream_id, piece) for piece in pieces[1:-1]]
    out.append(frame(CONTINUATION, END_HEADERS, stream_id, pieces[-1]))
    return b"".join(out)


def settings(pairs: dict[int, int]) -> bytes:
    return frame(SETTINGS, 0, 0, b"".join(struct.pack(">HI", k, v) for k, v in pairs.items()))


def window_update(stream_id: int, increment: int) -> bytes:
    return frame(WINDOW_UPDATE, 0, stream_id, struct.pack(">I", increment))


def goaway(last_stream_id: int, code: int, debug: bytes = b"") -> bytes:
    return frame(GOAWAY, 0, 0, struct.pack(">II", last_stream_id, code) + debug)


def rst_stream(stream_id: int, code: int) -> bytes:
    return frame(RST_STREAM, 0, stream_id, struct.pack(">I", code))


def grpc_message(payload: bytes) -> bytes:
    """A gRPC length-prefixed message (uncompressed)."""
    return b"\x00" + struct.pack(">I", len(payload)) + payload


# --- HPACK encoding without state (static table + literals without indexing) -------

_STATIC_NAME_INDEX = {":status": 8, "content-type": 31}


def _integer(value: int, prefix_bits: int, first: int) -> bytes:
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = [first | limit]
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _string(text: bytes) -> bytes:
    return _integer(len(text), 7, 0x00) + text  # no Huffman


def header_block(headers: list[tuple[str, str]]) -> bytes:
    """An HPACK block that any decoder reads the same, whatever its table holds."""
    out = []
    for name, value in headers:
        if name == ":status" and value == "200":
            out.append(b"\x88")  # static entry 8 is ":status: 200"
            continue
        index = _STATIC_NAME_INDEX.get(name)
        if index is not None:  # literal without indexing, indexed name
            out.append(_integer(index, 4, 0x00) + _string(value.encode()))
        else:  # literal without indexing, new name
            out.append(b"\x00" + _string(name.encode()) + _string(value.encode()))
    return b"".join(out)


RESPONSE_HEADERS = header_block([(":status", "200"), ("content-type", "application/grpc")])


#: Longest grpc-message we send (characters before encoding): our own texts are
#: short, and nothing a peer sent may grow an answer without bound.
MAX_STATUS_MESSAGE = 200


def trailers(status: int, message: str = "") -> bytes:
    """The trailer block ending a gRPC call with ``status``."""
    pairs = [("grpc-status", str(status))]
    if message:
        pairs.append(("grpc-message", _percent_encode(message[:MAX_STATUS_MESSAGE])))
    return header_block(pairs)


def trailers_only(status: int, message: str = "") -> bytes:
    """A block for a call that fails before any message (headers and trailers in one)."""
    return RESPONSE_HEADERS + trailers(status, message)


def _percent_encode(text: str) -> str:
    out = []
    for byte in text.encode("utf-8"):
        ch = chr(byte)
        out.append(ch if 0x20 <= byte <= 0x7E and ch != "%" else f"%{byte:02X}")
    return "".join(out)


OK_TRAILERS = trailers(0)
