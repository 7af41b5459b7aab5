"""The WAV reader: the formats it decodes, and hostile bodies that must come back as reasons."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from extproc.quality.decode import InvalidAudio, decode, encode_wav

RAMP = np.linspace(-0.5, 0.5, 400, dtype=np.float32)


def wav(data: bytes, *, tag: int = 1, channels: int = 1, rate: int = 16_000, bits: int = 16,
        data_size: int | None = None, extensible: bool = False) -> bytes:  # fmt: skip
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", 0xFFFE if extensible else tag, channels, rate, rate * block,
                      block, bits)  # fmt: skip
    if extensible:
        fmt += struct.pack("<HHI", 22, bits, 0) + struct.pack("<H", tag) + bytes(14)
    size = len(data) if data_size is None else data_size
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", size) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


@pytest.mark.parametrize(
    ("samples", "kwargs"),
    [
        ((RAMP * 32767).round().astype("<i2").tobytes(), {"bits": 16}),
        (((RAMP * 127).round() + 128).astype(np.uint8).tobytes(), {"bits": 8}),
        ((RAMP * 2**31).astype("<i4").tobytes(), {"bits": 32}),
        (RAMP.astype("<f4").tobytes(), {"tag": 3, "bits": 32}),
        (RAMP.astype("<f8").tobytes(), {"tag": 3, "bits": 64}),
        ((RAMP * 32767).round().astype("<i2").tobytes(), {"extensible": True}),
        (RAMP.astype("<f4").tobytes(), {"tag": 3, "bits": 32, "extensible": True}),
    ],
    ids=["pcm16", "pcm8", "pcm32", "float32", "float64", "extensible-pcm", "extensible-float"],
)
def test_uncompressed_formats_decode_to_the_same_samples(samples: bytes, kwargs: dict) -> None:
    audio = decode(wav(samples, **kwargs))
    assert audio.sample_rate == 16_000
    np.testing.assert_allclose(audio.samples, RAMP, atol=0.01)


def test_24_bit_and_stereo_are_decoded_and_mixed_down() -> None:
    ints = (RAMP * 2**23).astype(np.int32)
    triples = np.stack([ints & 0xFF, (ints >> 8) & 0xFF, (ints >> 16) & 0xFF], 1).astype(np.uint8)
    np.testing.assert_allclose(decode(wav(triples.tobytes(), bits=24)).samples, RAMP, atol=1e-4)
    stereo = np.stack([RAMP, np.zeros_like(RAMP)], 1)
    pcm = (stereo * 32767).round().astype("<i2").tobytes()
    np.testing.assert_allclose(decode(wav(pcm, channels=2)).samples, RAMP / 2, atol=1e-3)


def test_encode_then_decode_round_trips_and_raw_pcm_needs_a_named_rate() -> None:
    body = encode_wav(RAMP, 22_050)
    np.testing.assert_allclose(decode(body).samples, RAMP, atol=1e-4)
    raw = (RAMP * 32767).round().astype("<i2").tobytes()
    assert decode(raw, raw_pcm_rate=8_000).duration_s == pytest.approx(400 / 8_000)
    with pytest.raises(InvalidAudio) as refused:
        decode(raw)
    assert refused.value.reason == "not_wav"


def test_a_wav_bomb_is_read_only_as_far_as_the_body_goes() -> None:
    data = (RAMP * 32767).round().astype("<i2").tobytes()
    audio = decode(wav(data, data_size=0xFFFFFFFF))  # claims 4 GiB; also what streaming writers do
    assert len(audio.samples) == len(RAMP)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "empty"),
        (b'{"error": "model overloaded"}', "not_wav"),
        (b"ID3\x04\x00" + bytes(100), "not_wav"),  # an MP3
        (b"RIFF\x10\x00", "truncated"),
        (wav(b"")[:30], "truncated"),  # cut inside the fmt chunk
        (wav(b"")[:36], "truncated"),  # no data chunk
        (wav(b""), "empty"),
        (wav(b"\x01"), "empty"),  # half a 16-bit sample
        (wav(b"\x00\x00", rate=1_000), "bad_sample_rate"),
        (wav(b"\x00\x00", rate=10_000_000), "bad_sample_rate"),
        (wav(b"\x00\x00", tag=2), "bad_format"),  # ADPCM
        (wav(b"\x00\x00", bits=12), "bad_format"),
        (wav(b"\x00\x00", channels=0), "bad_format"),
        (b"RIFF\x00\x00\x00\x00WAVEdata\x02\x00\x00\x00\x00\x00", "truncated"),  # data before fmt
        (b"RIFF\x00\x00\x00\x00WAVE" + b"LIST\x00\x00\x00\x00" * 10_000, "truncated"),
    ],
)
def test_hostile_bodies_come_back_as_reasons(body: bytes, reason: str) -> None:
    with pytest.raises(InvalidAudio) as invalid:
        decode(body)
    assert invalid.value.reason == reason


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.integers(0, 60))
def test_any_bytes_decode_or_give_a_reason_never_anything_else(tail: bytes, cut: int) -> None:
    body = (wav(b"\x00\x10" * 8)[:cut] + tail) if cut else tail
    try:
        audio = decode(body)
    except InvalidAudio:
        return
    assert np.isfinite(audio.samples).all()
    assert float(np.abs(audio.samples).max(initial=0.0)) <= 1.0
