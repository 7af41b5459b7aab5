"""ASR read-back: pocketsphinx (the en-US model its wheel ships) transcribes, jiwer scores.

``wer`` and ``cer`` compare the transcript with the English words of the request text
(``words.reference_words``); a text with no English word is not scored (None). Audio is
resampled to 16 kHz. The decoder loads once, on first use, and is used under a lock (a
pocketsphinx decoder is not thread-safe). Both figures are capped at 1.0 so that one
hallucinated long transcript cannot dominate an average.

With a ``vocabulary`` (the probe corpus texts), a trigram language model of those sentences is
built at load time (pocketsphinx's own ``ArpaBoLM``, into a private temporary file) and used for
any text that is one of them; other texts use the general en-US model. The corpus model is what
makes the read-back usable on espeak-ng's formant speech (docs/audio-quality.md has the
figures): it tells "said the expected words" from "said something else or nothing", but it
cannot judge words outside the corpus, and it is lenient by design (it expects those sentences).
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from extproc.quality.decode import DecodedAudio
from extproc.quality.resample import MODEL_RATE, to_rate
from extproc.quality.words import reference_words

CORPUS_SEARCH = "corpus"


class AsrScorer:
    """Scorer ``asr``: figures ``wer`` and ``cer`` in [0, 1] (0 = every word heard)."""

    name = "asr"
    cpu_seconds_per_audio_second = 0.25  # measured, see docs/audio-quality.md

    def __init__(self, vocabulary: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._decoder: Any = None
        self._general = ""
        sentences = (" ".join(reference_words(text)) for text in vocabulary)
        self.sentences = frozenset(s for s in sentences if s)

    def _load(self) -> Any:
        if self._decoder is None:
            from pocketsphinx import Decoder, NGramModel

            decoder = Decoder(samprate=MODEL_RATE, loglevel="FATAL")
            self._general = decoder.current_search()
            if self.sentences:
                with tempfile.TemporaryDirectory(prefix="asr-lm-") as folder:
                    path = os.path.join(folder, "corpus.arpa")
                    _write_arpa(sorted(self.sentences), path)
                    model = NGramModel(decoder.config, decoder.logmath, path)
                decoder.add_lm(CORPUS_SEARCH, model)
            self._decoder = decoder
        return self._decoder

    def transcribe(self, audio: DecodedAudio, expected: str = "") -> str:
        """The recognizer's words for ``audio`` (may be empty); with the corpus model when
        ``expected`` (normalized words) is one of the vocabulary's sentences."""
        pcm = (to_rate(audio, MODEL_RATE) * 32767.0).astype("<i2").tobytes()
        with self._lock:
            decoder = self._load()
            search = CORPUS_SEARCH if expected in self.sentences else self._general
            if decoder.current_search() != search:
                decoder.activate_search(search)
            decoder.start_utt()
            decoder.process_raw(pcm, full_utt=True)
            decoder.end_utt()
            hypothesis = decoder.hyp()
        return str(hypothesis.hypstr) if hypothesis is not None else ""

    def score(self, audio: DecodedAudio, text: str) -> Mapping[str, float | None]:
        reference = reference_words(text)
        if not reference:
            return {"wer": None, "cer": None}
        heard = reference_words(self.transcribe(audio, " ".join(reference)))
        return error_rates(reference, heard)


def _write_arpa(sentences: list[str], path: str) -> None:
    from pocketsphinx.lm import ArpaBoLM

    model = ArpaBoLM(text="\n".join(sentences) + "\n", add_start=True, case="lower")
    model.compute()
    model.write_file(path)


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
