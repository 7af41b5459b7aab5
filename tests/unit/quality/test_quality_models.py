"""The model scorers on real stand-in speech (espeak-ng): the figures order as expected.

Slow-ish (~10 s of CPU: two models load, ten clips are scored) but part of CI: it is the
check that DNSMOS, the read-back and the signal checks still tell the faults apart.
"""

from __future__ import annotations

import numpy as np
import pytest

from extproc.quality.asr import AsrScorer
from extproc.quality.decode import decode
from extproc.quality.dnsmos import DnsmosScorer
from extproc.quality.resample import to_rate
from extproc.quality.words import reference_words
from extproc.standins.faults import wav_bytes
from extproc.standins.quality_table import TEXTS, Row, markdown, rows_for
from extproc.standins.speech import VOICES, espeak_available, synthesize

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not espeak_available(), reason="espeak-ng not installed"),
]


@pytest.fixture(scope="module")
def rows() -> dict[str, Row]:
    # two texts of 5-7 s: few DNSMOS windows each (a clip under 9 s is repeated to fill them)
    return {row.label.split(" ")[0]: row for row in rows_for("v1", TEXTS[2:4])}


def mean(rows: dict[str, Row], label: str, field: str) -> float:
    value = rows[label].mean(field)
    assert value is not None, f"{label}: no {field}"
    return value


def test_dnsmos_ranks_clean_above_clipped_and_both_far_above_noise_and_silence(
    rows: dict[str, Row],
) -> None:
    # P.808 does not reliably rank clipping (it may score it higher); OVRL does
    assert mean(rows, "clean", "ovrl") > mean(rows, "clipped", "ovrl")
    clean = mean(rows, "clean", "mos")
    for broken in ("noisy", "silent"):
        assert clean - mean(rows, broken, "mos") > 0.8
        assert mean(rows, "clean", "ovrl") - mean(rows, broken, "ovrl") > 0.5


def test_the_read_back_hears_clean_speech_and_misses_noise_silence_and_cut_words(
    rows: dict[str, Row],
) -> None:
    clean = mean(rows, "clean", "wer")
    assert clean < 0.5
    assert mean(rows, "truncated", "wer") > clean + 0.2
    for broken in ("noisy", "silent"):
        assert mean(rows, broken, "wer") > 0.8


def test_signal_checks_catch_what_the_models_do_not(rows: dict[str, Row]) -> None:
    assert mean(rows, "silent", "silence_ratio") == 1.0
    assert mean(rows, "noisy", "silence_ratio") < mean(rows, "clean", "silence_ratio") < 0.5
    assert mean(rows, "clean", "clipping_ratio") == 0.0
    assert mean(rows, "clipped", "clipping_ratio") > 0.01
    clean_pace = mean(rows, "clean", "seconds_per_char")
    assert mean(rows, "truncated", "seconds_per_char") < 0.5 * clean_pace
    assert all(f.valid for row in rows.values() for f in row.figures)


def test_our_dnsmos_gives_what_speechmos_gives() -> None:
    speechmos = pytest.importorskip("speechmos.dnsmos")
    audio = decode(wav_bytes(synthesize(VOICES["v2"], TEXTS[0]).tobytes(), 22_050))
    ours = DnsmosScorer().score(audio, TEXTS[0])
    theirs = speechmos.run(to_rate(audio), 16_000)
    assert ours["mos"] == pytest.approx(float(theirs["p808_mos"]), abs=1e-4)
    assert ours["ovrl"] == pytest.approx(float(theirs["ovrl_mos"]), abs=1e-4)


def test_the_corpus_language_model_reads_back_far_better_than_the_general_one() -> None:
    corpus, general = AsrScorer(TEXTS), AsrScorer()
    corpus_wers, general_wers = [], []
    clips = [decode(wav_bytes(synthesize(VOICES["v2"], t).tobytes(), 22_050)) for t in TEXTS[2:4]]
    for text, audio in zip(TEXTS[2:4], clips, strict=True):
        corpus_wers.append(corpus.score(audio, text)["wer"] or 0.0)
        general_wers.append(general.score(audio, text)["wer"] or 0.0)
    assert np.mean(corpus_wers) < 0.3
    assert np.mean(general_wers) > np.mean(corpus_wers) + 0.3
    silent = decode(wav_bytes(np.zeros(22_050, dtype="<i2").tobytes(), 22_050))
    expected = " ".join(reference_words(TEXTS[2]))  # selects the corpus decoder
    assert corpus.transcribe(silent, expected) == general.transcribe(silent) == ""
    # what was decoded before (here: digital silence) does not change a transcript
    assert corpus.score(clips[0], TEXTS[2])["wer"] == corpus_wers[0]


def test_the_table_command_prints_one_line_per_condition(rows: dict[str, Row]) -> None:
    table = markdown("v1", list(rows.values()), 2).splitlines()
    assert table[0].startswith("| v1 (2 texts) | P.808 MOS |")
    assert [line.split(" | ")[0] for line in table[2:]] == [f"| {r.label}" for r in rows.values()]
    assert "nan" not in "".join(table)
