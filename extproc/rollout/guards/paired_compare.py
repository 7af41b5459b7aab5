"""Compare guards on audio figures: the probes' paired differences over a stage, one
always-valid look per check (extproc.rollout.compare.paired).

The probe process numbers its rounds (``total`` in ``/pairs``; the newest round is number
``total``). At the first check of a stage the guard remembers the newest round number as
its anchor; each later check appends the differences of the rounds numbered after the last
one it has seen, in round order, and tests all the differences of the stage. The test starts
over with the next stage, after a controller restart, and when the round numbers go down
(the probe process restarted): each is a new test with its own ``alpha``.

The difference of a round is oriented so that larger is worse: MOS ``v1 - v2`` (the drop),
``asr_wer``, ``silence_ratio``, ``clipping_ratio`` ``v2 - v1`` (WER capped at 1 per answer,
so that one difference is bounded). A round counts only when both answers are valid audio
with the figure (a failed request is the error guards' business, invalid audio the
``invalid_audio_rate`` guard's).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol, runtime_checkable

from extproc.rollout.compare import paired
from extproc.rollout.guards.judge import Figure
from extproc.rollout.guards.quality import Pair, figure
from extproc.rollout.policy import PAIRED_BOUNDS, Guard
from extproc.rollout.state import Verdict

#: Mixture scale of the test per metric, in the metric's units: the size of a worsening
#: beyond the margin that is found fastest (docs/comparison-guards.md).
PAIRED_TAU = {"mos": 0.2, "asr_wer": 0.1, "silence_ratio": 0.05, "clipping_ratio": 0.02}
#: Seconds of rounds the quality source fetches for compare guards: covers the rounds
#: between two checks with room for a late check (older rounds are already counted).
PAIRED_HORIZON = 300.0

Rounds = tuple[tuple[tuple[Pair, ...], int] | None, str]  # (rounds, newest number), or why not


@runtime_checkable
class PairedRounds(Protocol):
    """A source of the probes' numbered rounds (the quality source)."""

    def paired_rounds(self) -> Rounds: ...


@dataclass(frozen=True, slots=True)
class PairedTrack:
    """One audio compare guard's memory within a stage."""

    stage: str
    since: float  # monotonic seconds of the anchor
    last_seq: int  # the newest round already counted (or the anchor)
    diffs: tuple[float, ...] = ()
    figure: Figure | None = None  # the last look, reused while no round arrives


def difference(metric: str, pair: Pair) -> float | None:
    """The round's difference, larger is worse (see the module docstring)."""
    v1, v2 = figure(metric, pair.v1), figure(metric, pair.v2)
    if v1 is None or v2 is None:
        return None
    if metric == "mos":
        return v1 - v2
    if metric == "asr_wer":
        return min(v2, 1.0) - min(v1, 1.0)
    return v2 - v1


class PairedComparisons:
    """The tracks of every audio compare guard of one controller."""

    def __init__(self) -> None:
        self._tracks: dict[str, PairedTrack] = {}

    def judge(self, guard: Guard, source: object, stage: str, at: float) -> Figure:
        if not isinstance(source, PairedRounds):
            return hold(guard, "no probe source: run the controller with --quality", 0.0)
        answer, why = source.paired_rounds()
        if answer is None:
            return hold(guard, why, 0.0)
        rounds, newest = answer
        track = self._tracks.get(guard.name)
        if track is None or track.stage != stage or newest < track.last_seq:
            self._tracks[guard.name] = PairedTrack(stage, at, newest)
            return hold(guard, "stage started: collecting probe pairs", 0.0)
        fresh = sorted((p for p in rounds if (p.seq or 0) > track.last_seq), key=_seq)
        if fresh or track.figure is None:
            comparison = guard.compare
            assert comparison is not None
            added = [d for p in fresh if (d := difference(comparison.metric, p)) is not None]
            diffs = track.diffs + tuple(added)
            track = PairedTrack(stage, track.since, newest, diffs, judge_pairs(guard, diffs))
            self._tracks[guard.name] = track
        assert track.figure is not None
        return replace(track.figure, window=at - track.since)


def judge_pairs(guard: Guard, diffs: Sequence[float]) -> Figure:
    """One look of ``guard`` on the stage's differences in round order (pure)."""
    comparison = guard.compare
    assert comparison is not None and comparison.paired, "judge_pairs takes audio compares"
    result = paired.look(
        diffs,
        margin=comparison.margin,
        alpha=comparison.alpha,
        tau=PAIRED_TAU[comparison.metric],
        bound=PAIRED_BOUNDS[comparison.metric],
        min_samples=guard.min_samples,
    )
    return Figure(
        guard=guard.name,
        signal=guard.signal,
        cohort=guard.cohort,
        value=result.effect,
        samples=result.samples,
        threshold=comparison.margin,
        window=0.0,
        min_samples=guard.min_samples,
        verdict=Verdict(result.verdict),
        detail=_detail(guard, result),
        metric=comparison.metric,
        alpha=comparison.alpha,
        low=result.low,
        high=result.high,
        p_value=result.p_value,
        e_value=result.e_value,
        samples_v2=result.samples,
        samples_v1=result.samples,
    )


def _seq(pair: Pair) -> int:
    return pair.seq or 0


def _detail(guard: Guard, result: paired.PairedLook) -> str:
    comparison = guard.compare
    assert comparison is not None
    if result.verdict == "hold":
        return f"{result.samples} pairs: fewer than {guard.min_samples}"
    level = f"{(1 - comparison.alpha) * 100:g}%"
    show = points(comparison.metric)
    worse = "drop v1 - v2" if comparison.metric == "mos" else "v2 - v1"
    return (
        f"{comparison.metric} {worse} {show(result.effect)} [{show(result.low)}, "
        f"{show(result.high)}] ({level} CS), margin {show(comparison.margin)}, "
        f"p {result.p_value:.3g}, e {result.e_value:.3g}; {result.samples} pairs"
    )


def points(metric: str) -> Callable[[float | None], str]:
    """How an effect of ``metric`` reads: MOS and WER as signed numbers, ratios in
    percentage points."""

    def number(value: float | None) -> str:
        return "?" if value is None else f"{value:+.3f}"

    def percentage_points(value: float | None) -> str:
        return "?" if value is None else f"{value * 100:+.1f}pp"

    return percentage_points if metric.endswith("_ratio") else number


def hold(guard: Guard, detail: str, window: float) -> Figure:
    comparison = guard.compare
    assert comparison is not None
    return Figure(
        guard=guard.name,
        signal=guard.signal,
        cohort=guard.cohort,
        value=None,
        samples=0,
        threshold=comparison.margin,
        window=window,
        min_samples=guard.min_samples,
        verdict=Verdict.HOLD,
        detail=detail,
        metric=comparison.metric,
        alpha=comparison.alpha,
    )
