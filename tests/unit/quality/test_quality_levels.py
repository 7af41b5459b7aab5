"""Signal checks and reference words: pure functions on small made-up inputs."""

from __future__ import annotations

import numpy as np
import pytest

from extproc.quality.decode import DecodedAudio
from extproc.quality.levels import clipping_ratio, seconds_per_char, silence_ratio, spoken_chars
from extproc.quality.words import number_words, reference_words

RATE = 16_000
TONE = (0.3 * np.sin(2 * np.pi * 220 * np.arange(RATE) / RATE)).astype(np.float32)


def audio(samples: np.ndarray) -> DecodedAudio:
    return DecodedAudio(samples=samples.astype(np.float32), sample_rate=RATE)


def test_silence_ratio_counts_quiet_frames() -> None:
    assert silence_ratio(audio(np.zeros(RATE))) == 1.0
    assert silence_ratio(audio(TONE)) == 0.0
    assert silence_ratio(audio(np.concatenate([TONE, np.zeros(RATE)]))) == 0.5
    assert silence_ratio(audio(TONE * 10 ** (-50 / 20))) == 1.0  # -60 dBFS: below -45
    assert silence_ratio(audio(np.zeros(10))) == 1.0  # shorter than one frame


def test_clipping_ratio_counts_samples_at_full_scale() -> None:
    assert clipping_ratio(audio(TONE)) == 0.0
    clipped = np.clip(TONE * 8, -1, 1)
    assert 0.5 < clipping_ratio(audio(clipped)) < 1.0
    assert clipping_ratio(audio(np.zeros(0))) == 0.0


def test_seconds_per_char_counts_letters_and_digits_of_any_script() -> None:
    assert spoken_chars("Hi, 42!") == 4
    assert spoken_chars("我们明天 B 204") == 8
    assert spoken_chars(" ... !? ") == 0
    assert seconds_per_char(2.0, "four") == 0.5
    assert seconds_per_char(2.0, "...") is None


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (0, "zero"),
        (13, "thirteen"),
        (40, "forty"),
        (204, "two hundred four"),
        (1_284, "one thousand two hundred eighty four"),
        (2_000_017, "two million seventeen"),
    ],
)
def test_numbers_are_spelled_as_a_recognizer_writes_them(value: int, words: str) -> None:
    assert " ".join(number_words(value)) == words


def test_reference_words_keep_latin_words_and_numbers_only() -> None:
    text = "The total is 1,284 dollars, 3.5% off; 您的订单 has shipped. Don't wait!"
    assert " ".join(reference_words(text)) == (
        "the total is one thousand two hundred eighty four dollars three point five percent "
        "off has shipped don't wait"
    )
    assert reference_words("我们明天下午三点开会") == []
    assert len(reference_words("9" * 5_000)) == 5_000  # too long to spell: digit by digit
