"""ASR read-back: pocketsphinx (the en-US model its wheel ships) transcribes, jiwer scores.

``wer`` and ``cer`` compare the transcript with the English words of the request text
(``words.reference_words``); a text with no English word is not scored (None). Audio is
resampled to 16 kHz. The decoder loads once, on first use, and is used under a lock (a
pocketsphinx decoder is not thread-safe). Both figures are capped at 1.0 so that one
hallucinated long transcript cannot dominate an average.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import numpy as np

from extproc.quality.decode import DecodedAudio
from extproc.quality.resample import MODEL_RATE, to_rate
from extproc.quality.words import reference_words


class AsrScorer:
    """Scorer ``asr``: figures ``wer`` and ``cer`` in [0, 1] (0 = every word heard)."""

    name = "asr"
    cpu_seconds_per_audio_second = 0.25  # measured, see docs/audio-quality.md

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._decoder: Any = None

    def _load(self) -> Any:
        if self._decoder is None:
            from pocketsphinx import Decoder

            self._decoder = Decoder(samprate=MODEL_RATE, loglevel="FATAL")
        return self._decoder

    def transcribe(self, audio: DecodedAudio) -> str:
        """The recognizer's words for ``audio`` (may be empty)."""
        pcm = (to_rate(audio, MODEL_RATE) * 32767.0).astype("<i2").tobytes()
        with self._lock:
            decoder = self._load()
            decoder.start_utt()
            decoder.process_raw(pcm, full_utt=True)
            decoder.end_utt()
            hypothesis = decoder.hyp()
        return str(hypothesis.hypstr) if hypothesis is not None else ""

    def score(self, audio: DecodedAudio, text: str) -> Mapping[str, float | None]:
        reference = reference_words(text)
        if not reference:
            return {"wer": None, "cer": None}
        heard = reference_words(self.transcribe(audio))
        return error_rates(reference, heard)


def error_rates(reference: list[str], heard: list[str]) -> dict[str, float | None]:
    """WER and CER of ``heard`` against ``reference`` (both word lists), each capped at 1."""
    import jiwer

    truth = " ".join(reference)
    if not heard:
        return {"wer": 1.0, "cer": 1.0}
    guess = " ".join(heard)
    wer = float(jiwer.wer(truth, guess))
    cer = float(jiwer.cer(truth, guess))
    return {"wer": float(np.clip(wer, 0.0, 1.0)), "cer": float(np.clip(cer, 0.0, 1.0))}
