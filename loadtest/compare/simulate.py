"""Simulated stages for the comparison bench: per-look counts of both cohorts, drawn with
numpy, and each guard method's first failing look on the same data.

A stage lasts ``stage_seconds`` and the controller looks every ``look_seconds``. Requests
arrive as Poisson processes (``rate`` req/s in total, ``share`` of them on v2). Latency is
log-normal, binned on the Envoy buckets of envoy/envoy.yaml; errors are Bernoulli; MOS is a
per-request score (normal, clipped to 1..5) for a sampled fraction of requests, binned in
0.1 steps. Methods, all on the same draws:

- ``sequential``: the shipped comparison guard (always valid: the normal-mixture mSPRT on
  Mann-Whitney for latency and MOS, the exact event-label mixture for errors);
- ``peeking``: the fixed-horizon one-sided test on the same statistic, repeated every look;
- ``fixed@end``: that test once, at the end of the stage (valid, but slow by design);
- ``threshold``: today's guard on v2 alone (p95 < 800 ms over 60 s with >= 100 samples;
  5xx rate < 0.5 % over 60 s with >= 200; MOS v1 - v2 <= 0.2 over 5 min).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr

from extproc.rollout.compare import sequential
from loadtest.compare import vector
from loadtest.compare.vector import Array

ENVOY_BOUNDS: tuple[float, ...] = (
    5.0, 10, 25, 50, 100, 200, 300, 400, 500, 600, 700, 800, 1000, 1500, 2000,
    3000, 5000, 10000, 30000, 60000, math.inf,
)  # fmt: skip
MOS_BOUNDS = tuple(round(0.1 * k, 1) for k in range(1, 41))  # badness 5 - MOS, 0..4
METHODS = ("sequential", "peeking", "fixed@end", "threshold")
CHUNK = 100  # stages drawn at once (bounds memory)


@dataclass(frozen=True, slots=True)
class Traffic:
    rate: float = 100.0  # requests/s, both cohorts
    share: float = 0.10  # on v2
    stage_seconds: float = 3600.0
    look_seconds: float = 10.0
    mos_sampled: float = 0.05  # fraction of requests scored
    min_samples: int = 100  # per cohort, before the comparison guard decides

    @property
    def looks(self) -> int:
        return int(self.stage_seconds // self.look_seconds)


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    metric: str  # latency | errors | mos
    margin: float  # relative for latency and errors, points for mos
    v2: float  # latency scale, error rate, MOS shift
    v1: float = 0.0  # error rate of v1 (errors only)
    common: float = 1.0  # latency scale of both cohorts (a slow hour for everyone)


@dataclass(frozen=True, slots=True)
class Outcome:
    """Per stage: the look at which a method failed (-1: never)."""

    fail_look: dict[str, np.ndarray]


LATENCY_MEDIAN_MS, LATENCY_SIGMA = 250.0, 0.35  # p95 = 444 ms
MOS_MEAN, MOS_SD = 4.0, 0.5


def latency_probabilities(scale: float) -> Array:
    edges = np.array([0.0, *ENVOY_BOUNDS])
    with np.errstate(divide="ignore"):
        z = (np.log(edges) - math.log(LATENCY_MEDIAN_MS * scale)) / LATENCY_SIGMA
    return np.asarray(np.diff(ndtr(z)), dtype=np.float64)


def mos_probabilities(shift: float) -> Array:
    """Badness 5 - MOS, MOS ~ N(MOS_MEAN + shift, MOS_SD) clipped to 1..5."""
    edges = np.array([-math.inf, *MOS_BOUNDS[:-1], math.inf])
    cdf = ndtr((edges - (5.0 - MOS_MEAN - shift)) / MOS_SD)
    return np.asarray(np.diff(cdf), dtype=np.float64)


def run(scenario: Scenario, traffic: Traffic, alpha: float, stages: int, seed: int) -> Outcome:
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {m: [] for m in METHODS}
    for start in range(0, stages, CHUNK):
        count = min(CHUNK, stages - start)
        if scenario.metric == "errors":
            chunk = _errors(scenario, traffic, alpha, count, rng)
        else:
            chunk = _distribution(scenario, traffic, alpha, count, rng)
        for method, looks in chunk.items():
            parts[method].append(looks)
    return Outcome({m: np.concatenate(parts[m]) for m in METHODS})


def _arrivals(traffic: Traffic, stages: int, rng: np.random.Generator, scored: float = 1.0):
    per_look = traffic.rate * traffic.look_seconds * scored
    shape = (stages, traffic.looks)
    return (
        rng.poisson(per_look * traffic.share, shape),
        rng.poisson(per_look * (1.0 - traffic.share), shape),
    )


def _distribution(
    scenario: Scenario, traffic: Traffic, alpha: float, stages: int, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    latency = scenario.metric == "latency"
    scored = 1.0 if latency else traffic.mos_sampled
    n2, n1 = _arrivals(traffic, stages, rng, scored)
    if latency:
        p2 = latency_probabilities(scenario.v2 * scenario.common)
        p1 = latency_probabilities(scenario.common)
        bounds, lower = ENVOY_BOUNDS, 0.0
    else:
        p2, p1 = mos_probabilities(scenario.v2), mos_probabilities(0.0)
        bounds, lower = MOS_BOUNDS, 0.0
    h2 = rng.multinomial(n2, p2).astype(np.float64)  # (stages, looks, buckets)
    h1 = rng.multinomial(n1, p1).astype(np.float64)
    c2, c1 = np.cumsum(h2, axis=1), np.cumsum(h1, axis=1)
    ratio, shift = (1.0 + scenario.margin, 0.0) if latency else (1.0, scenario.margin)
    moved = c1 @ vector.rebin_matrix(bounds, lower, ratio, shift)
    value, variance = vector.mann_whitney_excess(c2, moved)
    enough = np.minimum(c2.sum(-1), c1.sum(-1)) >= traffic.min_samples
    tau2 = sequential.LATENCY_TAU**2
    out = _tests(value, variance, tau2, enough, alpha)
    if latency:
        out["threshold"] = _latency_threshold(h2, traffic)
    else:
        out["threshold"] = _mos_threshold(h2, h1, traffic)
    return out


def _errors(
    scenario: Scenario, traffic: Traffic, alpha: float, stages: int, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    n2, n1 = _arrivals(traffic, stages, rng)
    e2, e1 = rng.binomial(n2, scenario.v2), rng.binomial(n1, scenario.v1)
    t2, t1 = np.cumsum(n2, 1).astype(float), np.cumsum(n1, 1).astype(float)
    x2, x1 = np.cumsum(e2, 1).astype(float), np.cumsum(e1, 1).astype(float)
    value, variance = vector.rate_excess(x2, t2, x1, t1, 1.0 + scenario.margin)
    ratio = 1.0 + scenario.margin
    log_e = vector.event_log_ratio(e2.astype(float), n2.astype(float), e1.astype(float),
                                   n1.astype(float), ratio)  # fmt: skip
    enough = np.minimum(t2, t1) >= traffic.min_samples
    out = _tests(value, variance, 0.0, enough, alpha, log_e)
    window = _window_looks(traffic, 60.0)
    trials, errors = _windowed(n2, window), _windowed(e2, window)
    with np.errstate(invalid="ignore", divide="ignore"):
        breach = (trials >= 200) & (errors / trials > 0.005)
    out["threshold"] = _first(breach)
    return out


def _tests(
    value: Array,
    variance: Array,
    tau2: Array | float,
    enough: np.ndarray,
    alpha: float,
    log_e: Array | None = None,
) -> dict[str, np.ndarray]:
    """The sequential test on ``log_e`` (default: the normal mixture on the statistic),
    the fixed-horizon z test on the statistic, repeated and once at the end."""
    if log_e is None:
        log_e = vector.log_ratio_one_sided(value, variance, tau2)
    log_e = np.where(enough, log_e, 0.0)
    best = np.maximum.accumulate(np.maximum(log_e, 0.0), axis=1)
    z = vector.z_excess(value, variance)
    critical = vector.z_critical(alpha)
    last = value.shape[1] - 1
    at_end = np.where(enough[:, last] & (z[:, last] > critical), last, -1)
    return {
        "sequential": _first(best >= math.log(1.0 / alpha)),
        "peeking": _first(enough & (z > critical)),
        "fixed@end": at_end,
    }


def _latency_threshold(h2: Array, traffic: Traffic) -> np.ndarray:
    window = _windowed(h2, _window_looks(traffic, 60.0))
    cum = np.cumsum(window, axis=-1)
    total = cum[..., -1]
    rank = 0.95 * total
    k = np.argmax(cum >= rank[..., None], axis=-1)  # first bucket reaching the rank
    uppers = np.array(ENVOY_BOUNDS)
    lowers = np.array([0.0, *ENVOY_BOUNDS[:-1]])
    below = (
        np.take_along_axis(cum, k[..., None], -1)[..., 0]
        - np.take_along_axis(window, k[..., None], -1)[..., 0]
    )
    inside = np.take_along_axis(window, k[..., None], -1)[..., 0]
    upper, lower = uppers[k], lowers[k]
    with np.errstate(invalid="ignore", divide="ignore"):
        p95 = np.where(np.isinf(upper), lower, lower + (upper - lower) * (rank - below) / inside)
    return _first((total >= 100) & (p95 > 800.0))


def _mos_threshold(h2: Array, h1: Array, traffic: Traffic) -> np.ndarray:
    window = _window_looks(traffic, 300.0)
    mids = 5.0 - (np.array([0.0, *MOS_BOUNDS[:-1]]) + np.array(MOS_BOUNDS)) / 2.0
    w2, w1 = _windowed(h2, window), _windowed(h1, window)
    n2, n1 = w2.sum(-1), w1.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        delta = (w1 @ mids) / n1 - (w2 @ mids) / n2
    return _first((n2 >= 1) & (n1 >= 1) & (delta > 0.2))


def _window_looks(traffic: Traffic, seconds: float) -> int:
    return max(1, round(seconds / traffic.look_seconds))


def _windowed(per_look: np.ndarray, looks: int) -> Array:
    """Sums over the last ``looks`` looks (fewer at the start of the stage)."""
    cum = np.cumsum(per_look, axis=1, dtype=np.float64)
    shifted = np.zeros_like(cum)
    shifted[:, looks:] = cum[:, :-looks]
    return cum - shifted


def _first(flags: np.ndarray) -> np.ndarray:
    """Per stage, the first look flagged (-1 if none)."""
    hit = flags.any(axis=1)
    return np.where(hit, np.argmax(flags, axis=1), -1)
