"""ASR read-back: pocketsphinx (the en-US model its wheel ships) transcribes, jiwer scores.

``wer`` and ``cer`` compare the transcript with the English words of the request text
(``words.reference_words``); a text with no English word is not scored (None). Audio is
resampled to 16 kHz. Dither is on: without it, digital silence (all-zero samples) gives
NaN features and the decoder "hears" a word that depends on what it decoded before; with it,
silence reads back as nothing and every transcript is repeatable. Each decoder loads once, on
first use, and is used under a lock (a pocketsphinx decoder is not thread-safe). Both figures
are capped at 1.0 so that one hallucinated long transcript cannot dominate an average.

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


class AsrScorer:
    """Scorer ``asr``: figures ``wer`` and ``cer`` in [0, 1] (0 = every word heard)."""

    name = "asr"

    def __init__(self, vocabulary: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._decoders: dict[bool, Any] = {}  # corpus model? -> decoder, each loaded on need
        sentences = (" ".join(reference_words(text)) for text in vocabulary)
        self.sentences = frozenset(s for s in sentences if s)

    @property
    def cpu_seconds_per_audio_second(self) -> float:
        """Measured (loadtest/scorer_cost.py): ~0.2 with the general model, ~0.035 with the
        corpus model; a vocabulary's texts use the latter."""
        return 0.04 if self.sentences else 0.25

    def _decoder(self, corpus: bool) -> Any:
        decoder = self._decoders.get(corpus)
        if decoder is None:
            from pocketsphinx import Decoder

            if not corpus:
                decoder = Decoder(samprate=MODEL_RATE, loglevel="FATAL", dither=True)
            else:
                # A dictionary of the corpus words only: with the full 130k-word dictionary,
                # building the search for even a tiny language model takes seconds of CPU.
                with tempfile.TemporaryDirectory(prefix="asr-lm-") as folder:
                    lm = os.path.join(folder, "corpus.arpa")
                    words = os.path.join(folder, "corpus.dict")
                    _write_arpa(sorted(self.sentences), lm)
                    _write_dictionary(self.sentences, words)
                    decoder = Decoder(
                        samprate=MODEL_RATE, loglevel="FATAL", dither=True, lm=lm, dict=words
                    )
            self._decoders[corpus] = decoder
        return decoder

    def transcribe(self, audio: DecodedAudio, expected: str = "") -> str:
        """The recognizer's words for ``audio`` (may be empty); with the corpus model when
        ``expected`` (normalized words) is one of the vocabulary's sentences."""
        pcm = (to_rate(audio, MODEL_RATE) * 32767.0).astype("<i2").tobytes()
        with self._lock:
            decoder = self._decoder(expected in self.sentences)
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


def _write_dictionary(sentences: Iterable[str], path: str) -> None:
    """The pronunciations (all variants) of the sentences' words from the bundled dictionary;
    a word it lacks is left out (the language model then cannot produce it)."""
    from pocketsphinx import get_model_path

    wanted = {word for sentence in sentences for word in sentence.split()}
    source = os.path.join(get_model_path(), "en-us", "cmudict-en-us.dict")
    with open(source, encoding="utf-8") as full, open(path, "w", encoding="utf-8") as out:
        for line in full:
            head = line.split(" ", 1)[0]
            if head.split("(", 1)[0] in wanted:
                out.write(line)


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
