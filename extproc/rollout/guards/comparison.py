"""Compare guards over a stage: v2 against v1 on the counts Envoy has seen since the stage
began, one always-valid sequential look per check (extproc.rollout.compare).

A compare guard's window is the stage: at the first check of a stage (the controller passes
a key that changes with the phase, stage and share) the guard remembers the cohorts'
cumulative counts as its anchor, and each later check compares what came after it. The
test's evidence (its running maximum) is carried from check to check within the stage and
starts over with the next stage, after a restart of the controller, or when Envoy's counts
go down (Envoy restarted): each of these is a new test with its own ``alpha``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Protocol, runtime_checkable

from extproc.rollout.compare import sequential
from extproc.rollout.compare.events import EventTest
from extproc.rollout.compare.histogram import Histogram
from extproc.rollout.compare.rates import Counts
from extproc.rollout.guards.envoy_stats import ClusterCounts, difference
from extproc.rollout.guards.judge import Figure
from extproc.rollout.guards.paired_compare import PairedComparisons
from extproc.rollout.guards.paired_compare import hold as _hold
from extproc.rollout.policy import Guard
from extproc.rollout.state import Verdict

Totals = tuple[Mapping[str, ClusterCounts] | None, str]  # counts by cohort, or why none


@runtime_checkable
class CohortTotals(Protocol):
    """A source that can give each cohort's cumulative counts at its newest reading."""

    def cohort_totals(self) -> Totals: ...


@dataclass(frozen=True, slots=True)
class LookState:
    """What a test carries from look to look: the running evidence, and for error rates
    the event test's per-shift ratios and last counts."""

    running: sequential.Running = field(default_factory=sequential.Running)
    events: EventTest = field(default_factory=EventTest)


@dataclass(frozen=True, slots=True)
class Track:
    """One compare guard's memory within a stage."""

    stage: str
    since: float  # monotonic seconds of the anchor
    anchor: Mapping[str, ClusterCounts] = field(default_factory=dict)
    test: LookState = field(default_factory=LookState)


class Comparisons:
    """The tracks of every compare guard of one controller (see the module docstring)."""

    def __init__(self) -> None:
        self._tracks: dict[str, Track] = {}
        self.paired = PairedComparisons()  # the audio metrics, on the probes' pairs

    def judge(self, guard: Guard, source: object, stage: str, at: float) -> Figure:
        """``guard`` (a compare guard) at monotonic time ``at`` on ``source``'s totals
        (the quality source's numbered rounds for an audio metric)."""
        if guard.compare is not None and guard.compare.paired:
            return self.paired.judge(guard, source, stage, at)
        if not isinstance(source, CohortTotals):
            return _hold(guard, "this source has no per-cohort counts", 0.0)
        totals, why = source.cohort_totals()
        if totals is None:
            return _hold(guard, why, 0.0)
        track = self._tracks.get(guard.name)
        deltas = _deltas(totals, track.anchor) if track and track.stage == stage else None
        if track is None or deltas is None:
            self._tracks[guard.name] = Track(stage, at, dict(totals))
            return _hold(guard, "stage started: collecting both cohorts", 0.0)
        figure, test = judge_counts(guard, deltas["v2"], deltas["v1"], track.test)
        self._tracks[guard.name] = Track(stage, track.since, track.anchor, test)
        return _with_window(figure, at - track.since)


def judge_counts(
    guard: Guard, v2: ClusterCounts, v1: ClusterCounts, test: LookState
) -> tuple[Figure, LookState]:
    """One look of ``guard`` on the stage's counts of each cohort (pure). Latency: the
    normal mixture on Mann-Whitney over the buckets; error rates: the exact event test,
    with the two-proportion statistic for the estimate."""
    comparison = guard.compare
    assert comparison is not None, "judge_counts takes compare guards only"
    events, log_e = test.events, None
    if comparison.metric == "latency":
        h2, h1 = Histogram.from_cumulative(v2.buckets), Histogram.from_cumulative(v1.buckets)
        statistic = sequential.latency_statistic(h2, h1)
        tau2, n2, n1 = sequential.LATENCY_TAU**2, h2.total, h1.total
    else:
        c2, c1 = Counts(v2.errors, v2.completed), Counts(v1.errors, v1.completed)
        statistic = sequential.rate_statistic(c2, c1)
        tau2, n2, n1 = sequential.rate_tau2(c2, c1), c2.trials, c1.trials
        events = events.advance(c2, c1, 1.0 + comparison.margin)
        log_e = events.log_ratio
    result = sequential.look(
        statistic,
        margin=comparison.margin,
        alpha=comparison.alpha,
        tau2=tau2,
        samples_v2=n2,
        samples_v1=n1,
        min_samples=guard.min_samples,
        running=test.running,
        log_e=log_e,
    )
    detail = _detail(guard, result)
    figure = Figure(
        guard=guard.name,
        signal=guard.signal,
        cohort=guard.cohort,
        value=result.effect,
        samples=int(min(n2, n1)),
        threshold=comparison.margin,
        window=0.0,
        min_samples=guard.min_samples,
        verdict=Verdict(result.verdict),
        detail=detail,
        metric=comparison.metric,
        alpha=comparison.alpha,
        low=result.low,
        high=result.high,
        p_value=result.p_value,
        e_value=_finite(result.e_value),
        samples_v2=int(n2),
        samples_v1=int(n1),
    )
    return figure, LookState(result.running, events)


def _deltas(
    totals: Mapping[str, ClusterCounts], anchor: Mapping[str, ClusterCounts]
) -> dict[str, ClusterCounts] | None:
    out = {}
    for cohort in ("v2", "v1"):
        if cohort not in totals or cohort not in anchor:
            return None
        delta = difference(totals[cohort], anchor[cohort])
        if delta is None:
            return None
        out[cohort] = delta
    return out


def _detail(guard: Guard, result: sequential.Look) -> str:
    comparison = guard.compare
    assert comparison is not None
    counts = f"n v2 {result.samples_v2:.0f}, v1 {result.samples_v1:.0f}"
    if result.verdict == "hold":
        return f"{counts}: fewer than {guard.min_samples} in a cohort"
    level = f"{(1 - comparison.alpha) * 100:g}%"
    return (
        f"{comparison.metric} v2 vs v1 {_change(result.effect)} "
        f"[{_change(result.low)}, {_change(result.high)}] ({level} CS), margin "
        f"{_change(comparison.margin)}, p {result.p_value:.3g}, e {result.e_value:.3g}; {counts}"
    )


def _change(value: float | None) -> str:
    return "?" if value is None else f"{value * 100:+.1f}%"


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _with_window(figure: Figure, window: float) -> Figure:
    return replace(figure, window=window)
