"""Signal checks on decoded samples: duration per character, silence ratio, clipping ratio.

Cheap (numpy over the samples once), so they run on every assessed answer.
"""

from __future__ import annotations

import math

import numpy as np

from extproc.quality.decode import DecodedAudio

FRAME_S = 0.020  # 20 ms analysis frames
SILENCE_DBFS = -45.0  # a frame whose RMS is below this is silent
CLIP_LEVEL = 0.999  # |sample| at or above this (of full scale) is clipped


def spoken_chars(text: str) -> int:
    """Characters that take time to say: letters and digits (any script), not spaces or marks."""
    return sum(1 for ch in text if ch.isalnum())


def seconds_per_char(duration_s: float, text: str) -> float | None:
    """Seconds of audio per spoken character; None when the text has none."""
    chars = spoken_chars(text)
    return duration_s / chars if chars else None


def silence_ratio(audio: DecodedAudio) -> float:
    """Fraction of 20 ms frames whose RMS is below ``SILENCE_DBFS`` (1.0 for all-silent audio)."""
    frame = max(1, int(audio.sample_rate * FRAME_S))
    count = len(audio.samples) // frame
    if count == 0:  # shorter than one frame: judge the whole thing as one frame
        return 1.0 if _dbfs(audio.samples) < SILENCE_DBFS else 0.0
    frames = audio.samples[: count * frame].reshape(count, frame).astype(np.float64)
    power = np.mean(frames * frames, axis=1)
    threshold = 10.0 ** (SILENCE_DBFS / 10.0)
    return float(np.count_nonzero(power < threshold)) / count


def clipping_ratio(audio: DecodedAudio) -> float:
    """Fraction of samples at or beyond ``CLIP_LEVEL`` of full scale."""
    if len(audio.samples) == 0:
        return 0.0
    return float(np.count_nonzero(np.abs(audio.samples) >= CLIP_LEVEL)) / len(audio.samples)


def _dbfs(samples: np.ndarray) -> float:
    if len(samples) == 0:
        return -math.inf
    power = float(np.mean(samples.astype(np.float64) ** 2))
    return 10.0 * math.log10(power) if power > 0 else -math.inf
