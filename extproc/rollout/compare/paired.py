"""An always-valid test on paired differences (audio figures of the same text), pure.

Each probe round gives one difference ``d`` of v2 against v1 on the same text, oriented so
that larger is worse (MOS: ``v1 - v2``, the drop; WER, silence, clipping: ``v2 - v1``) and
bounded in ``[-bound, bound]``. "v2 is at most ``margin`` worse than v1" is the null
hypothesis ``E[d] <= margin``.

**Test: the normal-mixture mSPRT on the mean difference** (Robbins 1970; Johari, Pekelis,
Walsh, "Always valid inference", 2022), one-sided, like the latency test
(:mod:`.mixture`): after ``n`` rounds the statistic is ``mean - margin`` with variance
``s2 / n`` (``s2`` the rounds' sample variance, floored, inflated by ``1 + 10 / n`` for
few rounds), mixed over a half-normal prior of
scale ``tau`` on the excess. The ratio is computed after *every* round of the stage (not
only at the controller's looks), from ``min_samples`` rounds on, and the guard fails when
its running maximum reaches ``1/alpha``: by Ville's inequality at most ``alpha`` of stages
under the null, to the extent that the mean of the rounds is close to normal with the
plug-in variance (asymptotic; ``min_samples`` keeps the first, roughest rounds out; the
A/A bench measures the result).

**Estimate**: the effect is the mean difference, the interval the two-sided ``1 - alpha``
mixture confidence sequence around it (:func:`.mixture.radius`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from extproc.rollout.compare import mixture

#: Floor of the per-round standard deviation, as a share of the bound: twenty identical
#: differences are not infinitely sure of their mean.
SD_FLOOR = 0.005
#: Small-sample inflation of the plug-in variance, ``1 + SMALL_SAMPLE / n``: the sample
#: variance of few rounds is often too small, and the normal mixture then too sure (measured:
#: 1.35 % A/A false alarms at alpha 1 % from 10 rounds without it, 0.6 % with it).
SMALL_SAMPLE = 10.0


@dataclass(frozen=True, slots=True)
class PairedLook:
    """One look at the differences of the stage so far."""

    verdict: str  # "pass" | "hold" | "fail"
    effect: float | None  # mean difference (worse-positive)
    low: float | None  # 1 - alpha confidence sequence on it
    high: float | None
    p_value: float  # anytime-valid: 1 / the largest mixture ratio so far, at most 1
    e_value: float  # the mixture ratio now
    samples: int


def log_ratio_path(diffs: Sequence[float], margin: float, tau: float, bound: float) -> list[float]:
    """The one-sided log mixture ratio for "mean difference > margin" after each round
    (0 before the second round: no variance yet)."""
    floor = (SD_FLOOR * bound) ** 2
    path, n, mean, m2 = [], 0, 0.0, 0.0
    for d in diffs:
        n += 1
        delta = d - mean  # Welford's running mean and sum of squares
        mean += delta / n
        m2 += delta * (d - mean)
        if n < 2:
            path.append(0.0)
            continue
        variance = _variance(m2 / (n - 1), floor, n)
        path.append(mixture.log_ratio_one_sided(mean - margin, variance, tau * tau))
    return path


def look(
    diffs: Sequence[float],
    *,
    margin: float,
    alpha: float,
    tau: float,
    bound: float,
    min_samples: int,
) -> PairedLook:
    """The stage's differences so far, in round order (pure: the path is recomputed from
    the differences, so nothing else is carried between looks)."""
    n = len(diffs)
    mean = math.fsum(diffs) / n if n else None
    if n < max(min_samples, 2):
        return PairedLook("hold", mean, None, None, 1.0, 1.0, n)
    assert mean is not None
    path = log_ratio_path(diffs, margin, tau, bound)
    best = max(0.0, *path[max(min_samples, 2) - 1 :])
    p_value = min(1.0, math.exp(-best))
    sample_variance = math.fsum((d - mean) ** 2 for d in diffs) / (n - 1)
    half = mixture.radius(_variance(sample_variance, (SD_FLOOR * bound) ** 2, n), tau * tau, alpha)
    return PairedLook(
        verdict="fail" if p_value <= alpha else "pass",
        effect=mean,
        low=max(mean - half, -bound),
        high=min(mean + half, bound),
        p_value=p_value,
        e_value=math.exp(min(path[-1], 700.0)),
        samples=n,
    )


def _variance(sample_variance: float, floor: float, n: int) -> float:
    """The variance of the mean of ``n`` rounds, floored and inflated for few rounds."""
    return max(sample_variance, floor) * (1.0 + SMALL_SAMPLE / n) / n
