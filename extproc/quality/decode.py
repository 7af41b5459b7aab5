"""Bytes to samples: a bounded RIFF/WAVE reader (stdlib ``struct`` + numpy), or raw PCM.

Decodes uncompressed WAV: integer PCM of 8 (unsigned), 16, 24 or 32 bits and IEEE float of 32
or 64 bits, plain or WAVE_FORMAT_EXTENSIBLE, any channel count (mixed down to mono). Raw
headerless PCM (16-bit little-endian mono) is decoded when the caller names its sample rate.
Nothing else (MP3, Ogg, FLAC, A-law/mu-law WAV) is decoded: those come back as ``not_wav`` or
``bad_format``.

Bounded by construction: the reader trusts no size field. A data chunk that claims more bytes
than the body holds (a "WAV bomb", or the 0x7FFFF000 placeholder that streaming writers such as
``espeak-ng --stdout`` put there) is read up to the end of the body, so memory stays within a
small multiple of ``len(body)``, which the caller bounds with ``max_bytes``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from extproc.quality import figures

MIN_SAMPLE_RATE = 4_000
MAX_SAMPLE_RATE = 192_000
MAX_CHANNELS = 16
MAX_CHUNKS = 64  # a RIFF file with more chunks before "data" is not a TTS answer
_PCM = 1
_FLOAT = 3
_EXTENSIBLE = 0xFFFE

Samples = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class DecodedAudio:
    """Mono samples as float32 in [-1, 1] at ``sample_rate`` Hz."""

    samples: Samples
    sample_rate: int

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate if self.sample_rate else 0.0


class InvalidAudio(ValueError):
    """The body is not audio we can judge; ``reason`` is a slug from ``figures``."""

    def __init__(self, reason: str, detail: str = "", sample_rate: int = 0) -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.sample_rate = sample_rate


def decode(body: bytes, *, raw_pcm_rate: int | None = None) -> DecodedAudio:
    """Decode ``body``; InvalidAudio (never anything else) says why it cannot be judged."""
    if not body:
        raise InvalidAudio(figures.EMPTY, "no bytes")
    if body[:4] != b"RIFF" or body[8:12] != b"WAVE":
        if len(body) < 12 and b"RIFF".startswith(body[:4]):
            raise InvalidAudio(figures.TRUNCATED, "shorter than a RIFF header")
        if raw_pcm_rate is not None:
            return _raw_pcm(body, raw_pcm_rate)
        raise InvalidAudio(figures.NOT_WAV, "no RIFF/WAVE header")
    fmt: tuple[int, int, int, int] | None = None
    offset = 12
    for _ in range(MAX_CHUNKS):
        if offset + 8 > len(body):
            break
        chunk_id, size = struct.unpack_from("<4sI", body, offset)
        start = offset + 8
        if chunk_id == b"fmt ":
            fmt = _format(body[start : start + size])
        elif chunk_id == b"data":
            if fmt is None:
                raise InvalidAudio(figures.TRUNCATED, "data chunk before fmt chunk")
            return _samples(body[start : start + size], *fmt)
        offset = start + size + (size & 1)
    raise InvalidAudio(figures.TRUNCATED, "no data chunk")


def _format(chunk: bytes) -> tuple[int, int, int, int]:
    """(format tag, channels, sample rate, bits per sample) of a fmt chunk, checked."""
    if len(chunk) < 16:
        raise InvalidAudio(figures.TRUNCATED, "fmt chunk cut short")
    tag, channels, rate, _, block_align, bits = struct.unpack_from("<HHIIHH", chunk)
    if tag == _EXTENSIBLE:
        if len(chunk) < 26:
            raise InvalidAudio(figures.TRUNCATED, "extensible fmt chunk cut short")
        (tag,) = struct.unpack_from("<H", chunk, 24)  # first two bytes of the sub-format GUID
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise InvalidAudio(figures.BAD_SAMPLE_RATE, f"{rate} Hz", sample_rate=rate)
    if not 1 <= channels <= MAX_CHANNELS:
        raise InvalidAudio(figures.BAD_FORMAT, f"{channels} channels", sample_rate=rate)
    known = (tag == _PCM and bits in (8, 16, 24, 32)) or (tag == _FLOAT and bits in (32, 64))
    if not known or block_align != channels * bits // 8:
        raise InvalidAudio(
            figures.BAD_FORMAT, f"format {tag}, {bits} bits, block {block_align}", rate
        )
    return tag, channels, rate, bits


def _samples(data: bytes, tag: int, channels: int, rate: int, bits: int) -> DecodedAudio:
    frame = channels * bits // 8
    usable = len(data) - len(data) % frame
    if usable == 0:
        raise InvalidAudio(figures.EMPTY, "no samples", sample_rate=rate)
    raw = memoryview(data)[:usable]
    if tag == _FLOAT:
        values = np.frombuffer(raw, dtype="<f4" if bits == 32 else "<f8").astype(np.float32)
        values = np.nan_to_num(np.clip(values, -1.0, 1.0), nan=0.0)
    elif bits == 8:
        values = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif bits == 24:
        triples = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        ints = triples[:, 0] | (triples[:, 1] << 8) | (triples[:, 2] << 16)
        ints = np.where(ints >= 1 << 23, ints - (1 << 24), ints)
        values = ints.astype(np.float32) / float(1 << 23)
    else:
        dtype = "<i2" if bits == 16 else "<i4"
        values = np.frombuffer(raw, dtype=dtype).astype(np.float32) / float(1 << (bits - 1))
    if channels > 1:
        values = values.reshape(-1, channels).mean(axis=1, dtype=np.float32)
    return DecodedAudio(samples=np.ascontiguousarray(values, dtype=np.float32), sample_rate=rate)


def _raw_pcm(body: bytes, rate: int) -> DecodedAudio:
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise InvalidAudio(figures.BAD_SAMPLE_RATE, f"{rate} Hz", sample_rate=rate)
    return _samples(body, _PCM, 1, rate, 16)


def encode_wav(samples: Samples, sample_rate: int) -> bytes:
    """A 16-bit mono PCM WAV of ``samples`` (clipped to [-1, 1]): the inverse of ``decode``."""
    ints = (np.clip(samples, -1.0, 1.0) * 32767.0).round().astype("<i2")
    data = ints.tobytes()
    header = struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + len(data),
        b"WAVE",
        b"fmt ",
        16,
        _PCM,
        1,
        sample_rate,
        sample_rate * 2,
        2,
        16,
        b"data",
        len(data),
    )
    return header + data
