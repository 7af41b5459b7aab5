"""Audio quality scorers: bytes and the request text in, ``AudioFigures`` out.

Pure of I/O frameworks: no gRPC, no Envoy, no clock, no asyncio. The model scorers (DNSMOS,
ASR) load their models lazily, once per process, from installed wheels; nothing is downloaded.
See docs/audio-quality.md for what each figure can and cannot tell.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from extproc.quality import figures as slugs
from extproc.quality.decode import DecodedAudio, InvalidAudio, decode
from extproc.quality.figures import AudioFigures
from extproc.quality.levels import clipping_ratio, seconds_per_char, silence_ratio, spoken_chars
from extproc.quality.scorer import Scorer, finite_or_none, run_scorers

__all__ = [
    "AudioFigures",
    "DecodedAudio",
    "InvalidAudio",
    "Scorer",
    "assess",
    "builtin_scorers",
    "decode",
    "run_scorers",
]

DEFAULT_MAX_BYTES = 8 << 20


@functools.cache
def _dnsmos() -> Scorer:
    from extproc.quality.dnsmos import DnsmosScorer

    return DnsmosScorer()


@functools.lru_cache(maxsize=4)
def _asr(vocabulary: tuple[str, ...]) -> Scorer:
    from extproc.quality.asr import AsrScorer

    return AsrScorer(vocabulary)


def builtin_scorers(
    *, mos: bool = True, asr: bool = True, asr_vocabulary: Sequence[str] = ()
) -> list[Scorer]:
    """The model scorers ``assess`` runs, each a process-wide singleton (models load once)."""
    chosen = [_dnsmos()] if mos else []
    return chosen + ([_asr(tuple(asr_vocabulary))] if asr else [])


def assess(
    audio: bytes,
    text: str,
    *,
    mos: bool = True,
    asr: bool = True,
    max_bytes: int = DEFAULT_MAX_BYTES,
    asr_vocabulary: Sequence[str] = (),
) -> AudioFigures:
    """Judge one TTS answer. Never raises on bad input: bad audio -> valid=False + reason.

    Order of checks: size (``too_large``), decoding (``empty``, ``not_wav``, ``truncated``,
    ``bad_format``, ``bad_sample_rate``), text (``no_text``: no letter or digit), then the
    signal checks, then DNSMOS (``mos``) and the ASR read-back (``asr``) on the first 30 s.
    ``asr_vocabulary``: the probe corpus texts; the read-back of those texts then uses a
    language model of the corpus (far more usable on formant speech; see asr.py). Keep it the
    same tuple across calls: each distinct vocabulary loads a decoder of its own.
    """
    if len(audio) > max_bytes:
        return AudioFigures.invalid(slugs.TOO_LARGE)
    try:
        decoded = decode(audio)
    except InvalidAudio as exc:
        return AudioFigures.invalid(exc.reason, sample_rate=exc.sample_rate)
    if spoken_chars(text) == 0:
        return AudioFigures.invalid(slugs.NO_TEXT, sample_rate=decoded.sample_rate)
    scored = run_scorers(
        decoded, text, builtin_scorers(mos=mos, asr=asr, asr_vocabulary=asr_vocabulary)
    )
    return AudioFigures(
        valid=True,
        invalid_reason="",
        duration_s=decoded.duration_s,
        sample_rate=decoded.sample_rate,
        seconds_per_char=finite_or_none(seconds_per_char(decoded.duration_s, text)),
        silence_ratio=finite_or_none(silence_ratio(decoded)),
        clipping_ratio=finite_or_none(clipping_ratio(decoded)),
        mos=scored.get("mos"),
        sig=scored.get("sig"),
        bak=scored.get("bak"),
        ovrl=scored.get("ovrl"),
        wer=scored.get("wer"),
        cer=scored.get("cer"),
    )
