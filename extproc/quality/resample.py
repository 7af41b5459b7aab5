"""Sample-rate conversion to what the models expect (16 kHz), polyphase (scipy)."""

from __future__ import annotations

import math

import numpy as np

from extproc.quality.decode import DecodedAudio, Samples

MODEL_RATE = 16_000


def to_rate(audio: DecodedAudio, rate: int = MODEL_RATE) -> Samples:
    """``audio.samples`` at ``rate`` Hz, float32, clipped to [-1, 1]."""
    if audio.sample_rate == rate:
        return audio.samples
    from scipy.signal import resample_poly  # lazy: only the model scorers need it

    common = math.gcd(audio.sample_rate, rate)
    out = resample_poly(audio.samples, rate // common, audio.sample_rate // common)
    return np.clip(out, -1.0, 1.0).astype(np.float32)
