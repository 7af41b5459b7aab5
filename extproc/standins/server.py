"""A stand-in TTS model server: real HTTP, real speech (espeak-ng), a version header, faults.

The real models cannot run here; this server answers like one would:

- ``POST /tts`` with JSON ``{"text": "..."}`` or a plain-text body -> 200, ``audio/wav`` (16-bit
  mono PCM) and header ``x-tts-model-version: <version>``. The audio is the text spoken by
  espeak-ng (22.05 kHz) with the version's own voice (``speech.VOICES``: v1 and v2 both healthy,
  audibly different), cached per (voice, text); ``--voice tone`` answers a tone whose duration
  grows with the text instead (8 kHz, no espeak-ng needed, for load tests; also through the
  environment: ``EXTPROC_STANDIN_VOICE=tone``). Empty text -> 400,
  body over 64 KiB -> 413, and with probability ``error_rate`` an injected 503. Every answer
  waits ``latency_ms`` first, and a /tts answer ``latency_per_char_ms`` per character more.
  ``x-tts-seen-cohort`` echoes the ``x-tts-cohort`` header as it reached the server ("-" if
  absent), so tests can see what Envoy forwarded.
- ``GET /healthz`` -> 200 ``ok``.
- ``GET /admin/fault`` -> the current faults as JSON; ``POST /admin/fault`` with a JSON object
  of fault keys (see ``faults``: latency_ms, latency_per_char_ms, error_rate, silence,
  clipping, noise, truncate_ms, wrong_sample_rate, empty, invalid_wav, and ``reset``) changes
  them at run time and answers the new state; invalid input -> 400 and nothing changes.

HTTP/1.1 keep-alive with Content-Length on every answer; TCP_NODELAY on every connection
(``http.server`` writes headers and body as two segments; with Nagle on, each response behind
Envoy would wait ~40 ms for a delayed ACK).

    python -m extproc.standins.server --version v2 --port 18082 --latency-ms 50
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import random
import signal
import sys
import threading
import time
from dataclasses import asdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any

import numpy as np

from extproc.standins.faults import Faults
from extproc.standins.speech import (
    DEFAULT_VOICE,
    ESPEAK_RATE,
    VOICES,
    Pcm,
    SpeechCache,
    SpeechUnavailable,
    espeak_available,
)

__all__ = ["Faults", "TtsHandler", "TtsStandinServer", "main"]

TONE = "tone"
VOICE_ENV = "EXTPROC_STANDIN_VOICE"  # e.g. "tone" for every stand-in a stack starts
SAMPLE_RATE = 8_000  # of the tone
SECONDS_PER_CHAR = 0.02
MIN_SECONDS = 0.1
MAX_SECONDS = 2.0
MAX_BODY_BYTES = 64 * 1024
TONE_HZ = {"v1": 220.0, "v2": 330.0}


def wav_seconds(text: str) -> float:
    """Duration of the tone for ``text``: proportional, within [0.1 s, 2 s]."""
    return min(MAX_SECONDS, max(MIN_SECONDS, len(text) * SECONDS_PER_CHAR))


@functools.lru_cache(maxsize=256)
def tone(seconds: float, tone_hz: float) -> Pcm:
    """A tone with a fade in and out at SAMPLE_RATE: never silent, never clipped."""
    frames = int(seconds * SAMPLE_RATE)
    n = np.arange(frames, dtype=np.float64)
    fade = max(1, frames // 10)
    envelope = np.minimum(1.0, np.minimum(n / fade, (frames - n) / fade))
    samples = 12_000 * envelope * np.sin(2 * math.pi * tone_hz * n / SAMPLE_RATE)
    pcm = samples.astype(np.int16)
    pcm.setflags(write=False)
    return pcm


def text_of(body: bytes, content_type: str) -> str:
    """The text to speak: JSON ``{"text": str}`` or the plain body. ValueError if malformed."""
    decoded = body.decode("utf-8", errors="replace")
    if "json" in content_type or decoded.lstrip().startswith("{"):
        try:
            payload = json.loads(decoded)
        except json.JSONDecodeError as exc:
            raise ValueError(f"invalid JSON: {exc.msg}") from exc
        if not isinstance(payload, dict) or not isinstance(payload.get("text"), str):
            raise ValueError('expected {"text": "..."}')
        return str(payload["text"])
    return decoded


class TtsStandinServer(ThreadingHTTPServer):
    """Holds the model version and the current faults for its handlers."""

    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default listen backlog is 5: while espeak-ng synthesizes a new text, a
    # burst of Envoy connections overflowed it and Envoy answered 503 (UF).
    request_queue_size = 128

    def __init__(
        self, address: tuple[str, int], version: str, faults: Faults, voice: str | None = None
    ) -> None:
        super().__init__(address, TtsHandler)
        self.version = version
        self.tone_hz = TONE_HZ.get(version, 440.0)
        self.voice = voice or version  # "tone", or a key of speech.VOICES
        self.speech = SpeechCache()
        self.faults = faults
        self.lock = threading.Lock()
        self.rng = random.Random()
        self.log_requests = False
        self.log_faults = True

    def roll_error(self) -> bool:
        with self.lock:
            return self.rng.random() < self.faults.error_rate

    def clean_audio(self, text: str) -> tuple[Pcm, int]:
        """The healthy model's samples for ``text`` and their sample rate."""
        if self.voice == TONE:
            return tone(wav_seconds(text), self.tone_hz), SAMPLE_RATE
        return self.speech.speech(VOICES.get(self.voice, DEFAULT_VOICE), text), ESPEAK_RATE


class TtsHandler(BaseHTTPRequestHandler):
    """One connection; keep-alive until the client closes it."""

    server: TtsStandinServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # TCP_NODELAY, see the module docstring

    def do_GET(self) -> None:
        if self.path == "/healthz":
            self._reply(200, b"ok\n", "text/plain")
        elif self.path == "/admin/fault":
            self._reply_json(200, asdict(self.server.faults))
        else:
            self._reply_json(404, {"error": f"no such path: {self.path}"})

    def do_POST(self) -> None:
        body = self._read_body()
        if body is None:
            return
        if self.path == "/tts":
            self._tts(body)
        elif self.path == "/admin/fault":
            self._set_faults(body)
        else:
            self._reply_json(404, {"error": f"no such path: {self.path}"})

    def _tts(self, body: bytes) -> None:
        faults = self.server.faults
        if faults.latency_ms > 0:
            time.sleep(faults.latency_ms / 1000)  # the injected model latency itself
        if self.server.roll_error():
            self._reply_json(503, {"error": "injected fault"})
            return
        try:
            text = text_of(body, self.headers.get("content-type", ""))
        except ValueError as exc:
            self._reply_json(400, {"error": str(exc)})
            return
        if not text.strip():
            self._reply_json(400, {"error": "empty text"})
            return
        try:
            pcm, rate = self.server.clean_audio(text)
        except SpeechUnavailable as exc:
            self._reply_json(500, {"error": str(exc)})
            return
        if faults.latency_per_char_ms > 0:
            time.sleep(faults.latency_per_char_ms * len(text) / 1000)  # long sentences: slower
        audio = faults.audio_body(pcm, rate, np.random.default_rng())
        self._reply(200, audio, "audio/wav")

    def _set_faults(self, body: bytes) -> None:
        with self.server.lock:
            try:
                raw = json.loads(body or b"{}")
                self.server.faults = Faults.parse(raw, self.server.faults)
            except ValueError as exc:  # JSONDecodeError is a ValueError
                self._reply_json(400, {"error": str(exc)})
                return
            state = asdict(self.server.faults)
        if self.server.log_faults:
            print(f"tts-standin {self.server.version}: faults now {state}", file=sys.stderr)
        self._reply_json(200, state)

    def _read_body(self) -> bytes | None:
        """The request body (Content-Length or chunked); None after answering 4xx."""
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            size = 0
            while True:
                chunk_len = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if chunk_len == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                size += chunk_len
                if size > MAX_BODY_BYTES:
                    self.close_connection = True
                    self._reply_json(413, {"error": "body too large"})
                    return None
                chunks.append(self.rfile.read(chunk_len))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("content-length") or 0)
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            self._reply_json(413, {"error": "body too large"})
            return None
        return self.rfile.read(length) if length else b""

    def _reply_json(self, status: int, payload: dict[str, Any]) -> None:
        self._reply(status, json.dumps(payload).encode() + b"\n", "application/json")

    def _reply(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.send_header("x-tts-model-version", self.server.version)
        self.send_header("x-tts-seen-cohort", self.headers.get("x-tts-cohort", "-"))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.log_requests:
            super().log_message(format, *args)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Stand-in TTS model server (espeak-ng speech).")
    parser.add_argument("--version", required=True, help="model version to report, e.g. v1, v2")
    parser.add_argument(
        "--voice",
        default=os.environ.get(VOICE_ENV) or None,
        choices=[*VOICES, TONE],
        help=f"speech voice (default ${VOICE_ENV}, else the one named like --version) or "
        "'tone' (a synthetic tone, no espeak-ng: small bodies for load tests)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default %(default)s)")
    parser.add_argument("--port", type=int, default=18081, help="port (default %(default)s)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added latency per request")
    parser.add_argument("--error-rate", type=float, default=0.0, help="fraction of 503 answers")
    parser.add_argument("--log-requests", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    try:
        faults = Faults.parse(
            {"latency_ms": args.latency_ms, "error_rate": args.error_rate}, Faults()
        )
    except ValueError as exc:
        parser.error(str(exc))
    if args.voice != TONE and not espeak_available():
        parser.error("espeak-ng is not installed (scripts/system-packages), or use --voice tone")
    server = TtsStandinServer((args.host, args.port), args.version, faults, voice=args.voice)
    server.log_requests = args.log_requests

    def on_signal(signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    where = f"{args.host}:{args.port}"
    print(
        f"tts-standin {args.version}: listening on {where}, faults {asdict(faults)}",
        file=sys.stderr,
        flush=True,
    )
    with server:
        server.serve_forever(poll_interval=0.2)
    print(f"tts-standin {args.version}: stopped", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
