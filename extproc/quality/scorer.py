"""The plug-in interface: a Scorer turns decoded audio and its text into named figures.

A team adds its own scorer (UTMOS, a Whisper ASR served elsewhere, a speaker-similarity model)
by writing a class with these three members; ``run_scorers`` runs any list of them with the same
guarantees as the built-in ones: a scorer that raises or returns NaN yields None, never a crash.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from typing import Protocol, runtime_checkable

import numpy as np

from extproc.quality.decode import DecodedAudio

log = logging.getLogger(__name__)

MAX_SCORED_SECONDS = 30.0  # model scorers judge at most the first 30 s (cost is linear in it)


@runtime_checkable
class Scorer(Protocol):
    """Judges decoded audio against the text it should say."""

    @property
    def name(self) -> str:
        """A short slug, e.g. ``dnsmos``; used in logs and metric labels."""
        ...

    @property
    def cpu_seconds_per_audio_second(self) -> float:
        """Measured CPU cost (see loadtest/scorer_cost.py), for budgeting; not enforced here."""
        ...

    def score(self, audio: DecodedAudio, text: str) -> Mapping[str, float | None]:
        """Figures by name. May raise; ``run_scorers`` turns that into None figures."""
        ...


def finite_or_none(value: object) -> float | None:
    """A plain float when ``value`` is a finite number, else None (never NaN or inf)."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def head(audio: DecodedAudio, seconds: float = MAX_SCORED_SECONDS) -> DecodedAudio:
    """The first ``seconds`` of ``audio`` (all of it when shorter)."""
    limit = int(seconds * audio.sample_rate)
    if len(audio.samples) <= limit:
        return audio
    return DecodedAudio(samples=audio.samples[:limit], sample_rate=audio.sample_rate)


def run_scorers(
    audio: DecodedAudio, text: str, scorers: Iterable[Scorer]
) -> dict[str, float | None]:
    """Every scorer's figures, merged; a failing scorer logs (no audio, no text) and adds None."""
    out: dict[str, float | None] = {}
    clipped = head(audio)
    for scorer in scorers:
        try:
            figures = scorer.score(clipped, text)
        except Exception as exc:  # a scorer bug must not take the assessment down
            log.warning("scorer %s failed: %s", scorer.name, type(exc).__name__)
            out[f"{scorer.name}_failed"] = 1.0
            continue
        for key, value in figures.items():
            out[key] = finite_or_none(value)
    return out
