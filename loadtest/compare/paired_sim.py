"""Simulated stages of paired probes (MOS of v1 and v2 on the same text each round), and four
guard methods on the same draws, vectorized with numpy.

A round every ``interval`` seconds: a text from a corpus of ten (each text its own MOS level,
N(3.5, 0.3), which the pairing cancels), each model's answer scored with per-answer noise
N(0, ``noise``) (a stochastic neural TTS and DNSMOS; the stand-ins are deterministic), v2
``drop`` points below v1, scores clipped to 1..5. The difference of a round is ``v1 - v2``.

Methods, each looking after every round:

- ``sequential``: the shipped test (extproc.rollout.compare.paired: normal-mixture mSPRT on
  the mean difference, plug-in variance), fail when its running maximum reaches 1/alpha;
- ``peeking``: the fixed-horizon one-sided z test of the mean difference against the margin
  at level alpha, repeated after every round (what a window-free classic test does);
- ``end``: that test once, after the last round of the stage;
- ``threshold``: today's quality guard, the mean of the last ``window`` rounds above the
  threshold (the example policy's mos-drop: 0.2 over 60 s, at least 4 pairs).
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
from scipy.special import log_ndtr

from extproc.rollout.compare import paired

PAIRED_METHODS = ("sequential", "peeking", "end", "threshold")


@dataclass(frozen=True, slots=True)
class PairedScenario:
    name: str
    drop: float  # true MOS drop of v2 (v1 - v2), points
    margin: float


@dataclass(frozen=True, slots=True)
class Probing:
    interval: float = 10.0  # seconds between rounds
    stage_seconds: float = 3600.0
    noise: float = 0.25  # per-answer score noise (sd)
    min_samples: int = 18
    tau: float = 0.2
    threshold: float = 0.2  # today's mos-drop guard
    window_rounds: int = 6
    window_min: int = 4

    @property
    def rounds(self) -> int:
        return int(self.stage_seconds // self.interval)


def draw(scenario: PairedScenario, probing: Probing, stages: int, seed: int) -> np.ndarray:
    """(stages, rounds) paired differences v1 - v2."""
    rng = np.random.default_rng(seed)
    n = probing.rounds
    levels = rng.normal(3.5, 0.3, size=(stages, 10))
    text = levels[:, np.arange(n) % 10]
    v1 = np.clip(text + rng.normal(0.0, probing.noise, (stages, n)), 1.0, 5.0)
    v2 = np.clip(text - scenario.drop + rng.normal(0.0, probing.noise, (stages, n)), 1.0, 5.0)
    out: np.ndarray = v1 - v2
    return out


def log_ratio_paths(diffs: np.ndarray, margin: float, tau: float, bound: float) -> np.ndarray:
    """:func:`paired.log_ratio_path` for every row at once (0 for the first round)."""
    n = np.arange(1, diffs.shape[1] + 1, dtype=float)
    mean = np.cumsum(diffs, axis=1) / n
    squares = np.cumsum(diffs * diffs, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        sample_var = np.where(n > 1, (squares - n * mean * mean) / np.maximum(n - 1, 1), 0.0)
    floor = (paired.SD_FLOOR * bound) ** 2
    v = np.maximum(sample_var, floor) * (1.0 + paired.SMALL_SAMPLE / n) / n
    t = tau * tau
    x = mean - margin
    z = x * np.sqrt(t / (v * (v + t)))
    out = np.log(2.0) + 0.5 * np.log(v / (v + t)) + x * x * t / (2.0 * v * (v + t)) + log_ndtr(z)
    out[:, 0] = 0.0
    result: np.ndarray = out
    return result


def first_true(hits: np.ndarray) -> np.ndarray:
    """Index of the first True per row, -1 for none."""
    any_hit = hits.any(axis=1)
    return np.where(any_hit, hits.argmax(axis=1), -1)


def fail_rounds(
    diffs: np.ndarray, scenario: PairedScenario, probing: Probing, alpha: float
) -> dict[str, np.ndarray]:
    """Per method, the round index of the first fail in each stage (-1: none)."""
    n = np.arange(1, diffs.shape[1] + 1, dtype=float)
    start = probing.min_samples - 1
    allowed = np.arange(diffs.shape[1]) >= start
    paths = log_ratio_paths(diffs, scenario.margin, probing.tau, 4.0)
    mean = np.cumsum(diffs, axis=1) / n
    squares = np.cumsum(diffs * diffs, axis=1)
    sample_var = np.maximum((squares - n * mean * mean) / np.maximum(n - 1, 1), 1e-12)
    z = (mean - scenario.margin) / np.sqrt(sample_var / n)
    critical = NormalDist().inv_cdf(1.0 - alpha)
    peeking = (z > critical) & allowed
    end = np.zeros_like(peeking)
    end[:, -1] = z[:, -1] > critical
    kernel = np.ones(probing.window_rounds)
    windows = np.apply_along_axis(lambda row: np.convolve(row, kernel)[: row.size], 1, diffs)
    counts = np.minimum(n, probing.window_rounds)
    threshold = (windows / counts > probing.threshold) & (counts >= probing.window_min)
    return {
        "sequential": first_true((paths >= np.log(1.0 / alpha)) & allowed),
        "peeking": first_true(peeking),
        "end": first_true(end),
        "threshold": first_true(threshold),
    }
