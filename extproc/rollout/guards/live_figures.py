"""Live sampling figures, pure: parse a sidecar's ``tts_quality_live_*`` series, diff two
scrapes, add the differences of several sidecars, and read an audio guard from the sum.

The sidecar exports them when live sampling is on (``EXTPROC_SAMPLE_RATE`` > 0; declared in
extproc/live/metrics.py, whose names this module reads and must keep stable):

- ``tts_quality_live_scored_total{cohort, outcome="valid|invalid"}``: sampled answers scored;
- ``tts_quality_live_<figure>_count|_sum{cohort}``: the histogram of each figure of the valid
  answers (``mos``, ``wer``, ``silence_ratio``, ``clipping_ratio``).

Every figure is cumulative, so a window's figure is the difference between two scrapes of the
same sidecar: a mean is ``delta sum / delta count``, the invalid-audio rate ``delta invalid /
delta scored``. Each series is diffed on its own (a supervisor with ``--workers`` labels them
by ``worker``), then the differences are added over series and sidecars. Samples are the
scored answers the figure has (``count``); for cohort ``v2-v1`` the smaller cohort's.

Cohort ``v2-v1`` is the gap between the cohorts' means over the window (``mos``: v1 - v2, the
drop): unlike the probes' pairs the texts differ between cohorts, so it is unpaired.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from extproc.rollout.guards.envoy_stats import labelled_samples
from extproc.rollout.guards.judge import Reading
from extproc.rollout.policy import Guard

PREFIX = "tts_quality_live_"
SCORED = PREFIX + "scored_total"
#: guard signal -> the sidecar's histogram name (without prefix and suffix)
HISTOGRAM_OF = {
    "mos": "mos",
    "asr_wer": "wer",
    "silence_ratio": "silence_ratio",
    "clipping_ratio": "clipping_ratio",
}
_WANTED = {
    PREFIX + name + suffix: (name + suffix)
    for name in HISTOGRAM_OF.values()
    for suffix in ("_count", "_sum")
}

#: (cohort, quantity, the series' other labels) -> cumulative value; quantity is ``valid``,
#: ``invalid`` or a histogram's ``<name>_count`` / ``<name>_sum``.
Series = Mapping[tuple[str, str, str], float]
#: (cohort, quantity) -> a window's difference, summed over series and sidecars.
Totals = Mapping[tuple[str, str], float]


def parse_live(text: str) -> dict[tuple[str, str, str], float]:
    """The live figures in a sidecar's Prometheus text exposition (other lines skipped);
    empty when the sidecar does not sample."""
    series: dict[tuple[str, str, str], float] = {}
    for name, labels, value in labelled_samples(text, PREFIX):
        cohort = labels.pop("cohort", None)
        quantity = labels.pop("outcome", None) if name == SCORED else _WANTED.get(name)
        if cohort is None or quantity is None:
            continue
        rest = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        series[(cohort, quantity, rest)] = value
    return series


def difference(new: Series, old: Series) -> dict[tuple[str, str, str], float] | None:
    """``new - old`` over the series both scrapes have; None if one went down: the sidecar
    (or a worker) restarted, the two scrapes cannot be compared. A series only ``new`` has is
    left out: the sidecar creates every series at 0, so a series missing from a scrape is a
    worker that did not answer it (``extproc serve --workers``), whose whole count must not
    be taken for the window's."""
    delta = {key: value - old[key] for key, value in new.items() if key in old}
    if any(value < 0 for value in delta.values()):
        return None
    return delta


def went_down(new: Series, old: Series) -> bool:
    return any(new[key] < value for key, value in old.items() if key in new)


def add_up(deltas: Iterable[Series]) -> dict[tuple[str, str], float]:
    """The differences of every series of every sidecar, added per (cohort, quantity)."""
    totals: dict[tuple[str, str], float] = {}
    for delta in deltas:
        for (cohort, quantity, _), value in delta.items():
            totals[(cohort, quantity)] = totals.get((cohort, quantity), 0.0) + value
    return totals


def live_reading(guard: Guard, totals: Totals, where: str = "") -> Reading:
    """The guard's reading over one window's totals (see the module docstring); ``where``
    (e.g. "from 2 sidecars over 60.0s") ends the detail."""
    suffix = f" {where}" if where else ""
    if guard.cohort != "v2-v1":
        value, samples = _cohort(guard.signal, guard.cohort, totals)
        if value is None:
            return Reading(None, 0, f"no live {guard.cohort} samples{suffix}")
        return Reading(value, samples, f"{samples} live {guard.cohort} samples{suffix}")
    v2, n2 = _cohort(guard.signal, "v2", totals)
    v1, n1 = _cohort(guard.signal, "v1", totals)
    shown = f"v2 {_show(v2)} ({n2}), v1 {_show(v1)} ({n1}){suffix}"
    if v2 is None or v1 is None:
        return Reading(None, min(n1, n2), shown)
    gap = v1 - v2 if guard.signal == "mos" else v2 - v1
    return Reading(gap, min(n1, n2), shown)


def _cohort(signal: str, cohort: str, totals: Totals) -> tuple[float | None, int]:
    """The cohort's figure over the window and its samples (None, 0: none)."""
    if signal == "invalid_audio_rate":
        invalid = totals.get((cohort, "invalid"), 0.0)
        scored = totals.get((cohort, "valid"), 0.0) + invalid
        return (invalid / scored, int(scored)) if scored > 0 else (None, 0)
    name = HISTOGRAM_OF[signal]
    count = totals.get((cohort, f"{name}_count"), 0.0)
    if count <= 0:
        return None, 0
    return totals.get((cohort, f"{name}_sum"), 0.0) / count, int(count)


def _show(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"
