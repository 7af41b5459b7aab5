"""Idle and handshake timeouts of the built-in HTTP/2 server (short limits, in process)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from hyperframe.frame import GoAwayFrame

from extproc.h2_limits import Flood, H2Limits

from .h2_peer import TIMEOUT, RawPeer, ServedH2, connect, raw_frame
from .harness import wait_for
from .test_h2_protocol import ECHO, ROUTES, raw_call_ok

NO_ERROR, HEADERS, PING, END_HEADERS = 0x0, 0x1, 0x6, 0x4
COUNT = 500_000  # PINGs: their ACKs (8.5 MB) overflow the kernel socket buffers


@pytest.fixture
def served() -> Iterator[ServedH2]:
    server = ServedH2(ROUTES, H2Limits(idle_timeout=0.5, handshake_timeout=0.5))
    yield server
    server.close()


def test_an_idle_connection_gets_goaway_and_is_closed(served: ServedH2) -> None:
    raw = RawPeer(served.port)
    try:
        assert raw_call_ok(raw, 1)  # then silent, no stream open
        frames = raw.until_closed()
        goaways = [f for f in frames if isinstance(f, GoAwayFrame)]
        assert [(g.error_code, g.last_stream_id) for g in goaways] == [(NO_ERROR, 1)]
    finally:
        raw.close()
    wait_for(lambda: served.connections() == 0, "the server to forget the connection")


def test_a_connection_with_an_open_stream_is_not_idle(served: ServedH2) -> None:
    busy, idle = RawPeer(served.port), RawPeer(served.port)
    try:
        busy.send(raw_frame(HEADERS, END_HEADERS, 1, busy.block(ECHO)))  # left open
        busy.barrier()
        assert raw_call_ok(idle, 1)
        idle.until_closed()  # the idle timeout has passed for both connections
        assert raw_call_ok(busy, 3)  # still served
        assert served.connections() == 1
    finally:
        busy.close()
        idle.close()


def test_a_silent_connection_is_closed_after_the_handshake_timeout(served: ServedH2) -> None:
    with connect(served.port) as sock:
        sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")  # and never SETTINGS
        received = b""
        while chunk := sock.recv(65_536):
            received += chunk
    assert received  # our SETTINGS came first, then the server closed
    wait_for(lambda: served.connections() == 0, "the server to forget the connection")


def test_a_peer_that_reads_again_after_backpressure_is_served_to_the_end() -> None:
    """Reading stops while our output is over the high-water mark, and also after the
    work budget of a pass; both pauses together must still end in a resumed connection."""
    unlimited = Flood(10**9, 10**9)
    limits = H2Limits(write_high_water=16_384, work_per_pass=16, ping_flood=unlimited)
    server = ServedH2(ROUTES, limits)
    raw = RawPeer(server.port)
    pings = b"".join(raw_frame(PING, 0, 0, i.to_bytes(8, "big")) for i in range(COUNT))
    sender = threading.Thread(target=raw.sock.sendall, args=(pings,), daemon=True)
    try:
        sender.start()  # 8.5 MB of PINGs (more than the kernel buffers); the ACKs stay unread

        def queued() -> int:
            (connection,) = server.server.connections
            return int(connection.transport.get_write_buffer_size())

        wait_for(lambda: server.on_loop(queued) > 0, "the server to queue output (paused)")
        # Our SETTINGS (5 settings), WINDOW_UPDATE, SETTINGS ACK, then one ACK per PING.
        expected = (9 + 5 * 6) + (9 + 4) + 9 + COUNT * (9 + 8)
        received = 0
        while received < expected:  # now read all of it
            chunk = raw.sock.recv(min(1 << 20, expected - received))
            assert chunk, "the server closed the connection"
            received += len(chunk)
        sender.join(TIMEOUT)
        assert raw_call_ok(raw, 1)  # and the connection still serves
    finally:
        raw.close()
        server.close()
