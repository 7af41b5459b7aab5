"""assess(): the contract the gate relies on. Bad input -> valid=False + reason, never a raise,
never NaN; a failing plug-in scorer costs its own figures only. No models here (fast)."""

from __future__ import annotations

import json
import math
import resource
import struct
from collections.abc import Mapping

import numpy as np
import pytest

from extproc.quality import AudioFigures, DecodedAudio, Scorer, assess, run_scorers
from extproc.quality.decode import encode_wav
from extproc.quality.figures import INVALID_REASONS

RATE = 16_000
SPEECHLIKE = (0.3 * np.sin(2 * np.pi * 180 * np.arange(2 * RATE) / RATE)).astype(np.float32)
GOOD = encode_wav(SPEECHLIKE, RATE)
TEXT = "Hello there, general listener."


def fast(body: bytes, text: str = TEXT, **kwargs: int) -> AudioFigures:
    return assess(body, text, mos=False, asr=False, **kwargs)


def assert_json_and_finite(figures: AudioFigures) -> None:
    plain = figures.as_dict()
    json.dumps(plain, allow_nan=False)
    assert set(plain) == set(AudioFigures.__dataclass_fields__)
    for value in plain.values():
        assert not (isinstance(value, float) and not math.isfinite(value))


def test_good_audio_gets_its_signal_figures() -> None:
    figures = fast(GOOD)
    assert (figures.valid, figures.invalid_reason, figures.sample_rate) == (True, "", RATE)
    assert figures.duration_s == pytest.approx(2.0)
    assert figures.seconds_per_char == pytest.approx(2.0 / 25)  # 25 letters
    assert (figures.silence_ratio, figures.clipping_ratio) == (0.0, 0.0)
    assert (figures.mos, figures.wer) == (None, None)  # turned off
    assert_json_and_finite(figures)


@pytest.mark.parametrize(
    ("body", "text", "reason"),
    [
        (b"", TEXT, "empty"),
        (b"<html>502 Bad Gateway</html>", TEXT, "not_wav"),
        (GOOD[:20], TEXT, "truncated"),
        (GOOD[:44], TEXT, "empty"),  # a header and zero-length data
        (GOOD, "", "no_text"),
        (GOOD, " ?! ... ", "no_text"),
        (GOOD[:24] + struct.pack("<I", 100) + GOOD[28:], TEXT, "bad_sample_rate"),
    ],
)
def test_bad_input_is_invalid_with_a_reason(body: bytes, text: str, reason: str) -> None:
    figures = fast(body, text)
    assert (figures.valid, figures.invalid_reason, figures.duration_s) == (False, reason, 0.0)
    assert figures.invalid_reason in INVALID_REASONS
    assert_json_and_finite(figures)


def test_a_huge_body_is_refused_before_decoding() -> None:
    assert fast(GOOD, max_bytes=1_000).invalid_reason == "too_large"
    huge = b"RIFF" + b"\x00" * (9 << 20)
    assert fast(huge).invalid_reason == "too_large"  # default cap: 8 MiB


def test_a_wav_bomb_costs_no_more_memory_than_its_body() -> None:
    bomb = GOOD[:40] + struct.pack("<I", 0xFFFFFFF0) + GOOD[44:]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    figures = fast(bomb)
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert figures.valid and figures.duration_s == pytest.approx(2.0)
    assert grown_kib < 64 * 1024  # a 4 GiB claim decodes as the 64 KiB there are


def test_nan_and_inf_float_samples_never_reach_the_figures() -> None:
    samples = np.array([np.nan, np.inf, -np.inf, 0.5] * 4000, dtype="<f4").tobytes()
    header = struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + len(samples), b"WAVE", b"fmt ",
                         16, 3, 1, RATE, RATE * 4, 4, 32, b"data", len(samples))  # fmt: skip
    figures = fast(header + samples)
    assert figures.valid
    assert_json_and_finite(figures)


class Broken:
    name = "broken"
    cpu_seconds_per_audio_second = 0.0

    def score(self, audio: DecodedAudio, text: str) -> Mapping[str, float | None]:
        raise RuntimeError("model crashed")


class Loudness:
    name = "loudness"
    cpu_seconds_per_audio_second = 0.0001

    def score(self, audio: DecodedAudio, text: str) -> Mapping[str, float | None]:
        return {"peak": float(np.abs(audio.samples).max()), "odd": math.nan}


def test_plug_in_scorers_run_and_a_broken_one_only_loses_its_figures() -> None:
    assert isinstance(Loudness(), Scorer) and isinstance(Broken(), Scorer)
    audio = DecodedAudio(samples=SPEECHLIKE, sample_rate=RATE)
    out = run_scorers(audio, TEXT, [Broken(), Loudness()])
    assert out == {"broken_failed": 1.0, "peak": pytest.approx(0.3, abs=1e-3), "odd": None}


class Recorder:
    name = "recorder"
    cpu_seconds_per_audio_second = 0.0

    def __init__(self) -> None:
        self.seen: list[float] = []

    def score(self, audio: DecodedAudio, text: str) -> Mapping[str, float | None]:
        self.seen.append(audio.duration_s)
        return {}


def test_model_scorers_see_at_most_the_first_30_seconds() -> None:
    recorder = Recorder()
    long = DecodedAudio(samples=np.zeros(95 * RATE, dtype=np.float32), sample_rate=RATE)
    run_scorers(long, TEXT, [recorder])
    run_scorers(DecodedAudio(samples=SPEECHLIKE, sample_rate=RATE), TEXT, [recorder])
    assert recorder.seen == [30.0, 2.0]
