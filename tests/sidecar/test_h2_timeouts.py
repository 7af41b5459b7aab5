"""Idle and handshake timeouts of the built-in HTTP/2 server (short limits, in process)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hyperframe.frame import GoAwayFrame

from extproc.h2_limits import H2Limits

from .h2_peer import RawPeer, ServedH2, connect, raw_frame
from .harness import wait_for
from .test_h2_protocol import ECHO, ROUTES, raw_call_ok

NO_ERROR, HEADERS, END_HEADERS = 0x0, 0x1, 0x4


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
