"""Speech for the stand-in TTS servers: espeak-ng (Debian package ``espeak-ng``) as a subprocess.

Each model version speaks with its own espeak-ng voice and parameters (``VOICES``), so v1 and
v2 are both healthy and audibly different. Synthesized audio is cached per (voice, text) in a
bounded LRU (``SpeechCache``), so repeated probes cost one dictionary look-up. The text is
passed on standard input (never as an argument) and cut at ``MAX_SPOKEN_CHARS``.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

ESPEAK = "espeak-ng"
ESPEAK_RATE = 22_050  # espeak-ng's output sample rate
MAX_SPOKEN_CHARS = 1_000  # ~70 s of speech; the rest of a longer text is not spoken
SYNTH_TIMEOUT_S = 20.0
CACHE_BYTES = 64 << 20

Pcm = npt.NDArray[np.int16]


@dataclass(frozen=True, slots=True)
class Voice:
    """espeak-ng settings: voice name (``-v``), words per minute (``-s``), pitch 0-99 (``-p``),
    amplitude 0-200 (``-a``; 60 leaves headroom, so clean speech never clips)."""

    name: str
    words_per_minute: int
    pitch: int
    amplitude: int = 60

    def argv(self) -> list[str]:
        return [
            ESPEAK,
            "--stdout",
            "-b",
            "1",  # input is UTF-8
            "-v",
            self.name,
            "-s",
            str(self.words_per_minute),
            "-p",
            str(self.pitch),
            "-a",
            str(self.amplitude),
        ]


# Two Klatt-synthesizer variants of en-US, audibly different (v2: another variant's timbre, a
# higher pitch, a little slower) and chosen so that a healthy pair does not trip the plan's
# 0.2 MOS-drop guard: on the probe corpus, DNSMOS P.808 of v1 - v2 averages -0.06 (largest
# per-text drop 0.08) and the read-back WER differs by 0.04 (docs/audio-quality.md).
VOICES = {
    "v1": Voice("en-us+klatt", words_per_minute=165, pitch=45),
    "v2": Voice("en-us+klatt3", words_per_minute=160, pitch=60),
}
DEFAULT_VOICE = Voice("en-us", words_per_minute=150, pitch=60)


class SpeechUnavailable(RuntimeError):
    """espeak-ng is not installed or failed."""


def espeak_available() -> bool:
    return shutil.which(ESPEAK) is not None


def synthesize(voice: Voice, text: str) -> Pcm:
    """16-bit mono samples at ``ESPEAK_RATE`` for ``text`` (cut at MAX_SPOKEN_CHARS)."""
    try:
        done = subprocess.run(
            voice.argv(),
            input=text[:MAX_SPOKEN_CHARS].encode("utf-8"),
            capture_output=True,
            timeout=SYNTH_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SpeechUnavailable(f"{ESPEAK}: {exc}") from exc
    if done.returncode != 0:
        raise SpeechUnavailable(f"{ESPEAK} exited {done.returncode}: {done.stderr[:200]!r}")
    return _pcm_of(done.stdout)


def _pcm_of(wav: bytes) -> Pcm:
    """The samples of espeak-ng's streaming WAV (its data size field is a placeholder)."""
    start = wav.find(b"data")
    if wav[:4] != b"RIFF" or start < 0:
        raise SpeechUnavailable(f"{ESPEAK} wrote no WAV")
    data = wav[start + 8 :]
    return np.frombuffer(data[: len(data) - len(data) % 2], dtype="<i2").astype(np.int16)


class SpeechCache:
    """A thread-safe LRU of synthesized speech, bounded in bytes; one synthesis per key."""

    def __init__(self, max_bytes: int = CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple[Voice, str], Pcm] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def speech(self, voice: Voice, text: str) -> Pcm:
        key = (voice, text[:MAX_SPOKEN_CHARS])
        with self._lock:
            pcm = self._items.get(key)
            if pcm is not None:
                self._items.move_to_end(key)
                self.hits += 1
                return pcm
            self.misses += 1
        pcm = synthesize(voice, key[1])  # outside the lock: espeak-ng takes tens of ms
        pcm.setflags(write=False)
        with self._lock:
            if key not in self._items and pcm.nbytes <= self.max_bytes:
                self._items[key] = pcm
                self._bytes += pcm.nbytes
                while self._bytes > self.max_bytes:
                    _, old = self._items.popitem(last=False)
                    self._bytes -= old.nbytes
        return pcm
