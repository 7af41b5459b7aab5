"""Judging guards, pure: a source's reading against a guard's threshold and sample floor.

A guard breaches when its value is above the threshold (below it for a score judged on one
cohort, ``mos`` of v2: see ``Guard.lower_is_worse``). With no value, or fewer samples
than ``min_samples``, it holds: it never passes and never fails on too little evidence, so
the ramp neither advances nor rolls back. Overall: any fail -> fail, else any hold -> hold,
else pass (no guards at all passes: the ramp then follows the schedule alone).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from extproc.rollout.policy import COMPARE, QUALITY_SIGNALS, Guard
from extproc.rollout.state import Verdict


@dataclass(frozen=True, slots=True)
class Reading:
    """What a source measured for one guard; ``value`` None means no data."""

    value: float | None
    samples: int
    detail: str = ""


class Source(Protocol):
    """A guard source: ``refresh`` does the I/O once per check, ``read`` is then pure."""

    async def refresh(self) -> None: ...

    def read(self, guard: Guard) -> Reading: ...


@dataclass(frozen=True, slots=True)
class Figure:
    """One guard's figures at one check (what status shows and the audit log keeps)."""

    guard: str
    signal: str
    cohort: str
    value: float | None  # seconds for latency, a ratio for error_rate, raw for promql
    samples: int
    threshold: float
    window: float
    min_samples: int
    verdict: Verdict
    detail: str = ""
    # compare guards only (value is then the effect, v2 vs v1, threshold the margin, window
    # the seconds of the stage so far; see guards/comparison.py)
    metric: str = ""
    alpha: float | None = None
    low: float | None = None  # confidence sequence on the effect, 1 - alpha
    high: float | None = None
    p_value: float | None = None  # anytime-valid
    e_value: float | None = None  # this check's mixture likelihood ratio at the margin
    samples_v2: int | None = None
    samples_v1: int | None = None
    source: str = ""  # audio guards: "probes" or "live" (policy.QUALITY_SOURCES)

    def to_json(self) -> dict[str, Any]:
        if self.metric:
            return {**self._base_json(), **self._compare_json()}
        return self._base_json()

    def _compare_json(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "alpha": self.alpha,
            "effect_low": self.low,
            "effect_high": self.high,
            "p_value": self.p_value,
            "e_value": self.e_value,
            "samples_v2": self.samples_v2,
            "samples_v1": self.samples_v1,
        }

    def _base_json(self) -> dict[str, Any]:
        return {
            "signal": self.signal,
            "cohort": self.cohort,
            "value": self.value,
            "samples": self.samples,
            "threshold": self.threshold,
            "window": self.window,
            "min_samples": self.min_samples,
            "verdict": self.verdict.value,
            "detail": self.detail,
            **({"source": self.source} if self.source else {}),
        }


def judge(guard: Guard, reading: Reading) -> Figure:
    """The guard's verdict on ``reading`` (see the module docstring)."""
    if reading.value is None or reading.samples < guard.min_samples:
        verdict = Verdict.HOLD
    elif _breached(guard, reading.value):
        verdict = Verdict.FAIL
    else:
        verdict = Verdict.PASS
    detail = reading.detail
    if verdict is Verdict.HOLD and reading.value is not None:
        detail = f"{reading.samples} samples, fewer than {guard.min_samples}"
    return Figure(
        guard=guard.name,
        signal=guard.signal,
        cohort="" if guard.signal == "promql" else guard.cohort,
        value=reading.value,
        samples=reading.samples,
        threshold=guard.threshold,
        window=guard.window,
        min_samples=guard.min_samples,
        verdict=verdict,
        detail=detail,
        source=guard.source,
    )


def _breached(guard: Guard, value: float) -> bool:
    return value < guard.threshold if guard.lower_is_worse else value > guard.threshold


def overall(figures: Iterable[Figure]) -> Verdict:
    verdicts = {f.verdict for f in figures}
    if Verdict.FAIL in verdicts:
        return Verdict.FAIL
    return Verdict.HOLD if Verdict.HOLD in verdicts else Verdict.PASS


@dataclass(frozen=True, slots=True)
class Evaluation:
    """All guards at one check: calendar time, overall verdict, figures in policy order."""

    at: float
    verdict: Verdict
    figures: tuple[Figure, ...] = ()

    def guards_json(self) -> dict[str, dict[str, Any]]:
        """Figures by guard name (the form ``state.tick`` and the audit log take)."""
        return {f.guard: f.to_json() for f in self.figures}


Compare = Callable[[Guard], Figure]


def evaluate(
    guards: Iterable[Guard],
    source_of: dict[str, Source],
    at: float,
    compare: Compare | None = None,
) -> Evaluation:
    """Judge every guard with its source's current reading (``source_of`` maps a signal
    family, ``envoy``, ``promql``, ``quality`` or ``live``, to a source); compare guards are
    judged by ``compare`` (guards/comparison.py), and hold without it."""
    figures = tuple(
        (compare(g) if compare else _no_compare(g))
        if g.signal == COMPARE
        else judge(g, source_of[family(g)].read(g))
        for g in guards
    )
    return Evaluation(at, overall(figures), figures)


def _no_compare(guard: Guard) -> Figure:
    return Figure(
        guard=guard.name,
        signal=guard.signal,
        cohort=guard.cohort,
        value=None,
        samples=0,
        threshold=guard.threshold,
        window=0.0,
        min_samples=guard.min_samples,
        verdict=Verdict.HOLD,
        detail="no comparison memory: compare guards hold",
    )


def family(guard: Guard) -> str:
    """Which source serves ``guard``: ``promql`` for PromQL, ``quality`` for the audio
    signals and audio compare guards (the probe process), ``live`` for audio signals with
    ``source: live`` (the sidecars' live sampling figures), ``envoy`` for latency and errors
    (and their compare guards)."""
    if guard.signal == "promql":
        return "promql"
    if guard.compare is not None:
        return "quality" if guard.compare.paired else "envoy"
    if guard.signal in QUALITY_SIGNALS:
        return "live" if guard.source == "live" else "quality"
    return "envoy"
