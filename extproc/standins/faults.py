"""The stand-in TTS servers' injectable faults: parsing (strict) and applying them to audio.

``POST /admin/fault`` takes a JSON object with any of these keys (absent keys keep their
current value; ``"reset": true`` first puts every fault back to its default):

=====================  =======================  ==============================================
key                    value (default = off)    effect
=====================  =======================  ==============================================
latency_ms             number >= 0 (0)          every answer waits this long first
latency_per_char_ms    number >= 0 (0)          plus this much per character of the text
error_rate             0..1 (0)                 that fraction of /tts answers is a 503
silence                bool (false)             the audio is all zeros (same length)
clipping               0 or a gain >= 1 (0)     samples times the gain, clipped at full scale
noise                  sd 0..1 (0)              white Gaussian noise of that sd added
truncate_ms            number >= 0 (0)          the audio stops after that many ms
wrong_sample_rate      0 or 1..1000000 Hz (0)   the header claims this rate; samples unchanged
empty                  bool (false)             200 with an empty body
invalid_wav            bool (false)             200 with a WAV header cut short (not decodable)
=====================  =======================  ==============================================

Invalid input raises ValueError naming the field, and nothing changes. The effects apply in
the order of the table; ``empty`` and ``invalid_wav`` win over the others.
"""

from __future__ import annotations

import io
import wave
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np

from extproc.standins.speech import Pcm

INVALID_WAV_BYTES = 30  # a RIFF/WAVE header cut inside its fmt chunk
_FLAGS = ("silence", "empty", "invalid_wav")


@dataclass(frozen=True)
class Faults:
    """Injected faults; replaced as a whole under the server's lock."""

    latency_ms: float = 0.0
    error_rate: float = 0.0
    latency_per_char_ms: float = 0.0
    silence: bool = False
    clipping: float = 0.0
    noise: float = 0.0
    truncate_ms: float = 0.0
    wrong_sample_rate: int = 0
    empty: bool = False
    invalid_wav: bool = False

    @classmethod
    def parse(cls, raw: Any, current: Faults) -> Faults:
        """Merge a JSON object into ``current``; ValueError names the offending field."""
        if not isinstance(raw, dict):
            raise ValueError("expected a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = set(raw) - known - {"reset"}
        if unknown:
            raise ValueError(f"unknown field(s): {', '.join(sorted(unknown))}")
        reset = raw.get("reset", False)
        if not isinstance(reset, bool):
            raise ValueError("reset: expected true or false")
        base = cls() if reset else current
        changes = {name: _checked(name, value) for name, value in raw.items() if name != "reset"}
        return replace(base, **changes)

    def audio_body(self, pcm: Pcm, sample_rate: int, rng: np.random.Generator) -> bytes:
        """The answer body for clean ``pcm``: a WAV with every audio fault applied."""
        if self.empty:
            return b""
        samples = pcm.astype(np.float32) / 32768.0
        if self.silence:
            samples = np.zeros_like(samples)
        if self.clipping:
            samples = samples * self.clipping
        if self.noise:
            samples = samples + rng.normal(0.0, self.noise, len(samples)).astype(np.float32)
        if self.truncate_ms:
            samples = samples[: int(sample_rate * self.truncate_ms / 1000)]
        ints = (np.clip(samples, -1.0, 32767 / 32768) * 32768.0).astype("<i2")
        body = wav_bytes(ints.tobytes(), self.wrong_sample_rate or sample_rate)
        return body[:INVALID_WAV_BYTES] if self.invalid_wav else body


def wav_bytes(pcm16le: bytes, sample_rate: int) -> bytes:
    """A mono 16-bit PCM WAV around little-endian samples."""
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate)
        wav.writeframes(pcm16le)
    return out.getvalue()


def _checked(name: str, value: Any) -> Any:
    if name in _FLAGS:
        if not isinstance(value, bool):
            raise ValueError(f"{name}: expected true or false")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise ValueError(f"{name}: expected a number")
    if name == "error_rate" and not 0 <= value <= 1:
        raise ValueError("error_rate: expected a number in [0, 1]")
    if name == "clipping" and not (value == 0 or 1 <= value <= 1000):
        raise ValueError("clipping: expected 0 (off) or a gain in [1, 1000]")
    if name == "noise" and not 0 <= value <= 1:
        raise ValueError("noise: expected a standard deviation in [0, 1]")
    if name == "wrong_sample_rate":
        if not (isinstance(value, int) and (value == 0 or 1 <= value <= 1_000_000)):
            raise ValueError("wrong_sample_rate: expected 0 (off) or an integer in [1, 1000000]")
        return value
    if value < 0 or value == float("inf"):
        raise ValueError(f"{name}: expected a number >= 0")
    return float(value)
