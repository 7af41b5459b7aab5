"""The stand-in TTS server: real WAV, version header, keep-alive, run-time faults."""

from __future__ import annotations

import http.client
import io
import json
import sys
import threading
import wave
from array import array
from collections.abc import Iterator
from pathlib import Path

import pytest

from extproc.stack import tts_standin
from extproc.stack.processes import ManagedProcess, free_port, wait_for_http
from extproc.stack.tts_standin import Faults, TtsStandinServer


@pytest.fixture
def server() -> Iterator[TtsStandinServer]:
    standin = TtsStandinServer(("127.0.0.1", 0), "v2", Faults())
    thread = threading.Thread(target=standin.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield standin
    finally:
        standin.shutdown()
        standin.server_close()
        thread.join()


@pytest.fixture
def conn(server: TtsStandinServer) -> Iterator[http.client.HTTPConnection]:
    host, port = server.server_address[:2]
    connection = http.client.HTTPConnection(str(host), int(port), timeout=10)
    yield connection
    connection.close()


def call(
    conn: http.client.HTTPConnection,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[http.client.HTTPResponse, bytes]:
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    return response, response.read()


def parse_wav(data: bytes) -> tuple[wave._wave_params, array[int]]:
    with wave.open(io.BytesIO(data), "rb") as wav:
        params = wav.getparams()
        samples = array("h", wav.readframes(params.nframes))
    if sys.byteorder == "big":
        samples.byteswap()
    return params, samples


def test_tts_answers_a_valid_wav_with_the_model_version(conn: http.client.HTTPConnection) -> None:
    response, body = call(conn, "POST", "/tts", b'{"text": "hello world"}')
    assert response.status == 200
    assert response.getheader("content-type") == "audio/wav"
    assert response.getheader("x-tts-model-version") == "v2"
    assert int(response.getheader("content-length") or -1) == len(body)
    params, samples = parse_wav(body)
    assert (params.nchannels, params.sampwidth, params.framerate) == (1, 2, 8000)
    assert params.nframes == int(tts_standin.wav_seconds("hello world") * 8000)
    assert 0 < max(abs(s) for s in samples) < 32767  # neither silent nor clipped


def test_plain_text_bodies_work_and_longer_text_gives_longer_audio(
    conn: http.client.HTTPConnection,
) -> None:
    _, short = call(conn, "POST", "/tts", b"hi there", {"content-type": "text/plain"})
    _, longer = call(conn, "POST", "/tts", b"hi there, " * 5, {"content-type": "text/plain"})
    assert parse_wav(short)[0].nframes < parse_wav(longer)[0].nframes


def test_duration_is_capped() -> None:
    assert tts_standin.wav_seconds("x" * 100_000) == tts_standin.MAX_SECONDS
    assert tts_standin.wav_seconds("x") == tts_standin.MIN_SECONDS


@pytest.mark.parametrize(
    ("body", "status"),
    [(b'{"text": ""}', 400), (b'{"txt": "a"}', 400), (b"{broken", 400), (b"x" * 70_000, 413)],
)
def test_bad_requests_are_rejected(
    conn: http.client.HTTPConnection, body: bytes, status: int
) -> None:
    response, _ = call(conn, "POST", "/tts", body)
    assert response.status == status


def test_one_connection_serves_many_requests(
    server: TtsStandinServer, conn: http.client.HTTPConnection
) -> None:
    call(conn, "GET", "/healthz")
    first_socket = conn.sock
    for _ in range(3):
        response, _ = call(conn, "POST", "/tts", b'{"text": "again"}')
        assert response.status == 200
    assert conn.sock is first_socket
    assert tts_standin.TtsHandler.disable_nagle_algorithm is True


def test_the_seen_cohort_header_echoes_what_arrived(conn: http.client.HTTPConnection) -> None:
    response, _ = call(conn, "POST", "/tts", b"hello", {"x-tts-cohort": "v2"})
    assert response.getheader("x-tts-seen-cohort") == "v2"
    response, _ = call(conn, "POST", "/tts", b"hello")
    assert response.getheader("x-tts-seen-cohort") == "-"


def test_faults_change_at_run_time(conn: http.client.HTTPConnection) -> None:
    response, body = call(conn, "POST", "/admin/fault", b'{"error_rate": 1}')
    assert response.status == 200
    assert json.loads(body) == {"latency_ms": 0.0, "error_rate": 1.0}
    response, _ = call(conn, "POST", "/tts", b"hello")
    assert response.status == 503
    assert response.getheader("x-tts-model-version") == "v2"
    call(conn, "POST", "/admin/fault", b'{"error_rate": 0, "latency_ms": 5}')
    response, body = call(conn, "GET", "/admin/fault")
    assert json.loads(body) == {"latency_ms": 5.0, "error_rate": 0.0}
    assert call(conn, "POST", "/tts", b"hello")[0].status == 200


@pytest.mark.parametrize(
    "body",
    [b'{"error_rate": 2}', b'{"latency_ms": -1}', b'{"latency": 1}', b"[1]", b"nope"],
)
def test_invalid_faults_are_rejected_and_change_nothing(
    conn: http.client.HTTPConnection, body: bytes
) -> None:
    assert call(conn, "POST", "/admin/fault", body)[0].status == 400
    _, state = call(conn, "GET", "/admin/fault")
    assert json.loads(state) == {"latency_ms": 0.0, "error_rate": 0.0}


def test_command_line_faults_and_sigterm(tmp_path: Path) -> None:
    port = free_port()
    argv = [sys.executable, "-m", "extproc.stack.tts_standin", "--version", "v1"]
    argv += ["--port", str(port), "--error-rate", "1"]
    root = Path(tts_standin.__file__).resolve().parents[2]
    with ManagedProcess("tts_v1", argv, tmp_path / "tts.log", cwd=root) as process:
        wait_for_http(f"http://127.0.0.1:{port}/healthz", timeout=15, process=process)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        response, _ = call(connection, "POST", "/tts", b"hello")
        connection.close()
        assert response.status == 503
        assert response.getheader("x-tts-model-version") == "v1"
        assert process.stop() == 0
