"""The stand-in TTS server: real speech (espeak-ng), version header, keep-alive, run-time faults."""

from __future__ import annotations

import http.client
import io
import json
import os
import sys
import threading
import time
import wave
from array import array
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from extproc.quality.decode import InvalidAudio, decode
from extproc.quality.levels import clipping_ratio, silence_ratio
from extproc.stack.processes import ManagedProcess, free_port, wait_for_http
from extproc.standins import server as tts_standin
from extproc.standins import speech
from extproc.standins.server import Faults, TtsStandinServer
from extproc.standins.speech import ESPEAK_RATE, VOICES

DEFAULT_FAULTS = asdict(Faults())


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


def test_tts_answers_spoken_words_as_a_valid_wav_with_the_model_version(
    conn: http.client.HTTPConnection,
) -> None:
    response, body = call(conn, "POST", "/tts", b'{"text": "hello world"}')
    assert response.status == 200
    assert response.getheader("content-type") == "audio/wav"
    assert response.getheader("x-tts-model-version") == "v2"
    assert int(response.getheader("content-length") or -1) == len(body)
    params, samples = parse_wav(body)
    assert (params.nchannels, params.sampwidth, params.framerate) == (1, 2, ESPEAK_RATE)
    assert 0.4 < params.nframes / ESPEAK_RATE < 3.0  # two words of speech
    assert 1000 < max(abs(s) for s in samples) < 32767  # neither silent nor clipped


def test_plain_text_bodies_work_and_longer_text_gives_longer_audio(
    conn: http.client.HTTPConnection,
) -> None:
    _, short = call(conn, "POST", "/tts", b"hi there", {"content-type": "text/plain"})
    _, longer = call(conn, "POST", "/tts", b"hi there, " * 5, {"content-type": "text/plain"})
    assert parse_wav(short)[0].nframes < parse_wav(longer)[0].nframes


def test_v1_and_v2_speak_with_different_voices() -> None:
    assert VOICES["v1"] != VOICES["v2"]
    text = "The weather is fine today."
    v1, v2 = (speech.synthesize(VOICES[v], text) for v in ("v1", "v2"))
    assert len(v1) != len(v2) or not (v1 == v2).all()


def test_repeated_texts_come_from_the_cache(
    server: TtsStandinServer, conn: http.client.HTTPConnection
) -> None:
    _, first = call(conn, "POST", "/tts", b"cached words")
    misses = server.speech.misses
    _, again = call(conn, "POST", "/tts", b"cached words")
    assert again == first
    assert (server.speech.misses, server.speech.hits) == (misses, 1)


def test_the_speech_cache_is_bounded_in_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(speech, "synthesize", lambda voice, text: np.zeros(100, np.int16))
    cache = speech.SpeechCache(max_bytes=500)  # room for two answers of 200 bytes
    for text in ("a", "b", "c"):
        cache.speech(VOICES["v1"], text)
    cache.speech(VOICES["v1"], "c")
    cache.speech(VOICES["v1"], "a")  # evicted as the oldest: synthesized again
    assert (cache.hits, cache.misses) == (1, 4)


def test_the_tone_voice_keeps_the_old_synthetic_answer() -> None:
    standin = TtsStandinServer(("127.0.0.1", 0), "v1", Faults(), voice="tone")
    try:
        pcm, rate = standin.clean_audio("hello world")
    finally:
        standin.server_close()
    assert rate == 8000
    assert len(pcm) == int(tts_standin.wav_seconds("hello world") * 8000)
    assert 0 < int(np.abs(pcm).max()) < 32767


def test_duration_of_the_tone_is_capped() -> None:
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
    assert json.loads(body) == {**DEFAULT_FAULTS, "error_rate": 1.0}
    response, _ = call(conn, "POST", "/tts", b"hello")
    assert response.status == 503
    assert response.getheader("x-tts-model-version") == "v2"
    call(conn, "POST", "/admin/fault", b'{"error_rate": 0, "latency_ms": 5}')
    response, body = call(conn, "GET", "/admin/fault")
    assert json.loads(body) == {**DEFAULT_FAULTS, "latency_ms": 5.0}
    assert call(conn, "POST", "/tts", b"hello")[0].status == 200
    response, body = call(conn, "POST", "/admin/fault", b'{"reset": true, "silence": true}')
    assert json.loads(body) == {**DEFAULT_FAULTS, "silence": True}


@pytest.mark.parametrize(
    "body",
    [
        b'{"error_rate": 2}',
        b'{"latency_ms": -1}',
        b'{"latency": 1}',
        b"[1]",
        b"nope",
        b'{"silence": 1}',
        b'{"clipping": 0.5}',
        b'{"noise": 2}',
        b'{"noise": true}',
        b'{"truncate_ms": -5}',
        b'{"wrong_sample_rate": 8000.5}',
        b'{"latency_per_char_ms": "1"}',
        b'{"empty": "yes"}',
        b'{"reset": 1}',
        b'{"invalid_wav": true, "noise": 5}',  # one bad key: nothing of it applies
    ],
)
def test_invalid_faults_are_rejected_and_change_nothing(
    conn: http.client.HTTPConnection, body: bytes
) -> None:
    call(conn, "POST", "/admin/fault", b'{"clipping": 4}')
    assert call(conn, "POST", "/admin/fault", body)[0].status == 400
    _, state = call(conn, "GET", "/admin/fault")
    assert json.loads(state) == {**DEFAULT_FAULTS, "clipping": 4.0}


TEXT = b"The quick brown fox jumps over the lazy dog."


def audio_with(conn: http.client.HTTPConnection, fault: bytes) -> bytes:
    changes = json.dumps({"reset": True, **json.loads(fault)}).encode()
    assert call(conn, "POST", "/admin/fault", changes)[0].status == 200
    response, body = call(conn, "POST", "/tts", TEXT)
    assert response.status == 200
    return body


def test_audio_faults_change_what_the_model_says(conn: http.client.HTTPConnection) -> None:
    clean = decode(audio_with(conn, b"{}"))
    assert silence_ratio(clean) < 0.5 and clipping_ratio(clean) == 0
    silent = decode(audio_with(conn, b'{"silence": true}'))
    assert silent.duration_s == clean.duration_s and not silent.samples.any()
    clipped = decode(audio_with(conn, b'{"clipping": 8}'))
    assert clipping_ratio(clipped) > 0.02
    noisy = decode(audio_with(conn, b'{"noise": 0.1}'))
    assert silence_ratio(noisy) == 0 and 0.09 < float(np.std(noisy.samples - clean.samples)) < 0.11
    cut = decode(audio_with(conn, b'{"truncate_ms": 300}'))
    assert cut.duration_s == pytest.approx(0.3, abs=1e-3)
    slow = decode(audio_with(conn, b'{"wrong_sample_rate": 8000}'))
    assert slow.sample_rate == 8000 and len(slow.samples) == len(clean.samples)
    assert audio_with(conn, b'{"empty": true}') == b""
    with pytest.raises(InvalidAudio) as broken:
        decode(audio_with(conn, b'{"invalid_wav": true}'))
    assert broken.value.reason == "truncated"


def test_latency_grows_with_the_text(conn: http.client.HTTPConnection) -> None:
    call(conn, "POST", "/tts", b"x" * 40)  # synthesized and cached before timing
    call(conn, "POST", "/admin/fault", b'{"latency_per_char_ms": 10}')
    started = time.monotonic()
    assert call(conn, "POST", "/tts", b"x" * 40)[0].status == 200
    assert time.monotonic() - started >= 0.4  # a lower bound: a sleep never ends early


def test_command_line_faults_and_sigterm(tmp_path: Path) -> None:
    port = free_port()
    argv = [sys.executable, "-m", "extproc.standins.server", "--version", "v1"]
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


def test_the_environment_can_choose_the_tone_for_every_stand_in(tmp_path: Path) -> None:
    port = free_port()
    argv = [sys.executable, "-m", "extproc.standins.server", "--version", "v2"]
    argv += ["--port", str(port)]
    root = Path(tts_standin.__file__).resolve().parents[2]
    env = {**os.environ, tts_standin.VOICE_ENV: "tone"}
    with ManagedProcess("tts_v2", argv, tmp_path / "tts.log", cwd=root, env=env) as process:
        wait_for_http(f"http://127.0.0.1:{port}/healthz", timeout=15, process=process)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        response, body = call(connection, "POST", "/tts", b"hello world")
        connection.close()
        assert response.status == 200
        assert parse_wav(body)[0].framerate == 8000
        assert process.stop() == 0
