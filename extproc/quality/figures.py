"""What the scorers say about one answer: a frozen record of figures, JSON-ready.

Every field that a scorer did not compute (turned off, or the audio was invalid) is None;
nothing is ever NaN or infinite (the scorers map those to None).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

# Slugs for ``AudioFigures.invalid_reason``; the gate counts each as invalid audio.
EMPTY = "empty"  # no body, or a WAV with no samples
NOT_WAV = "not_wav"  # not a RIFF/WAVE file
TRUNCATED = "truncated"  # a header cut short, or no data chunk
BAD_FORMAT = "bad_format"  # a WAV encoding we do not decode (compressed, odd sample width)
BAD_SAMPLE_RATE = "bad_sample_rate"  # outside [MIN_SAMPLE_RATE, MAX_SAMPLE_RATE]
NO_TEXT = "no_text"  # the request text has no letter or digit to speak
TOO_LARGE = "too_large"  # more bytes, or more seconds, than the caller allows
INVALID_REASONS = (EMPTY, NOT_WAV, TRUNCATED, BAD_FORMAT, BAD_SAMPLE_RATE, NO_TEXT, TOO_LARGE)


@dataclass(frozen=True, slots=True)
class AudioFigures:
    """The figures for one (audio, text) pair; see docs/audio-quality.md for each one's meaning."""

    valid: bool  # decoded as usable speech audio
    invalid_reason: str  # "" if valid, else one of INVALID_REASONS
    duration_s: float  # 0.0 when invalid
    sample_rate: int  # 0 when unknown
    seconds_per_char: float | None
    silence_ratio: float | None
    clipping_ratio: float | None
    mos: float | None  # DNSMOS P.808
    sig: float | None  # DNSMOS P.835 SIG / BAK / OVRL
    bak: float | None
    ovrl: float | None
    wer: float | None  # pocketsphinx + jiwer against the text
    cer: float | None

    @classmethod
    def invalid(cls, reason: str, *, sample_rate: int = 0) -> AudioFigures:
        """The figures of audio that could not be judged: only the reason is known."""
        return cls(
            valid=False,
            invalid_reason=reason,
            duration_s=0.0,
            sample_rate=sample_rate,
            seconds_per_char=None,
            silence_ratio=None,
            clipping_ratio=None,
            mos=None,
            sig=None,
            bak=None,
            ovrl=None,
            wer=None,
            cer=None,
        )

    def as_dict(self) -> dict[str, float | str | bool | None]:
        """Plain JSON-ready values, field names as keys."""
        return asdict(self)
