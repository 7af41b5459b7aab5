"""Audio-quality guards: the probe process's paired results, judged per guard window.

The probe process (``extproc quality probe``, see docs/audio-gate.md) sends the same text to
v1 and to v2 at a fixed interval, scores both answers and serves the recent pairs over HTTP:

    GET /pairs?horizon=SECONDS  ->  {"pairs": [{"age": 12.5, "text": "numbers-1",
                                      "v1": {figures} | null, "v2": {figures} | null}, ...],
                                     "total": 1234}

``total`` counts every round the process has logged, so the newest pair is round number
``total`` and the list (newest first) numbers itself downwards: compare guards on audio
figures (guards/paired_compare.py) count each round once by that number. ``age`` is seconds
before the answer (the probe process's own monotonic clock, so no clock
skew between hosts matters); a side is ``null`` when its request failed (no HTTP 200: that is
the error guards' business, not audio). ``figures`` are the scorer's ``AudioFigures.as_dict()``:
``valid``, ``duration_s``, ``silence_ratio``, ``clipping_ratio``, ``mos``, ``wer``, ... (None
where a scorer had nothing to say, e.g. every score of invalid audio).

:class:`QualitySource` fetches that once per check; :func:`reading` is the pure part:

- cohort ``v2`` / ``v1``: the mean of that cohort's figures over the window (``mos``: breach
  below the threshold, see ``Guard.lower_is_worse``); samples = scored answers;
- cohort ``v2-v1``: the mean of the paired differences on the same text, v2 - v1 (``mos``:
  v1 - v2, the drop; ``truncation``: 1 - duration_v2 / duration_v1); samples = pairs where
  both sides have the figure;
- ``invalid_audio_rate``: the share of answers (HTTP 200) that are not valid audio.

A pair counts only if it is younger than the guard's window. No reachable probe process, or
too few samples, reads as no data: the guard holds (never passes, never fails).
"""

from __future__ import annotations

import asyncio
import json
import logging
import statistics
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from extproc.rollout.guards.judge import Reading
from extproc.rollout.policy import Guard

log = logging.getLogger("extproc.rollout.guards.quality")

DEFAULT_QUALITY_URL = "http://127.0.0.1:9470"
FIGURE_OF = {
    "mos": "mos",
    "asr_wer": "wer",
    "silence_ratio": "silence_ratio",
    "clipping_ratio": "clipping_ratio",
    "truncation": "duration_s",
}

Figures = Mapping[str, Any]
Fetch = Callable[[str, float], bytes]


@dataclass(frozen=True, slots=True)
class Pair:
    """One probe round: the same text's figures from v1 and v2 (None: that request failed)."""

    age: float
    text: str
    v1: Figures | None
    v2: Figures | None
    seq: int | None = None  # the round's number in the probe process (from ``total``)

    def side(self, cohort: str) -> Figures | None:
        return self.v1 if cohort == "v1" else self.v2


def parse_pairs(answer: Any) -> tuple[Pair, ...]:
    """The pairs of a ``/pairs`` answer; ValueError for anything else."""
    total = round_count(answer)
    pairs = []
    for index, item in enumerate(answer["pairs"]):
        if not isinstance(item, dict):
            raise ValueError("a pair is not an object")
        age = item.get("age")
        if isinstance(age, bool) or not isinstance(age, int | float) or age < 0:
            raise ValueError(f"a pair has no valid age: {age!r}")
        v1, v2 = item.get("v1"), item.get("v2")
        if not all(side is None or isinstance(side, dict) for side in (v1, v2)):
            raise ValueError("a pair's side is neither figures nor null")
        seq = None if total is None else total - index  # newest first: total, total - 1, ...
        pairs.append(Pair(float(age), str(item.get("text", "")), v1, v2, seq))
    return tuple(pairs)


def round_count(answer: Any) -> int | None:
    """``total`` of a ``/pairs`` answer: the number of the newest round (None: an older
    probe process without it; compare guards on audio figures then hold)."""
    if not isinstance(answer, dict) or not isinstance(answer.get("pairs"), list):
        raise ValueError("expected an object with a 'pairs' list")
    total = answer.get("total")
    if isinstance(total, bool) or not isinstance(total, int) or total < len(answer["pairs"]):
        return None
    return total


def reading(guard: Guard, pairs: Iterable[Pair]) -> Reading:
    """The guard's reading over the pairs younger than its window (see the module docstring)."""
    recent = [p for p in pairs if p.age <= guard.window]
    if guard.signal == "invalid_audio_rate":
        return _invalid_rate(guard.cohort, recent)
    if guard.cohort == "v2-v1":
        return _paired(guard.signal, recent)
    values = [v for p in recent if (v := _figure(guard.signal, p.side(guard.cohort))) is not None]
    return _mean(values, f"{guard.cohort} answers")


def figure(signal: str, figures: Figures | None) -> float | None:
    """``signal``'s figure of one valid answer (None: invalid, failed or not scored)."""
    return _figure(signal, figures)


def _figure(signal: str, figures: Figures | None) -> float | None:
    if figures is None or not figures.get("valid"):
        return None
    value = figures.get(FIGURE_OF[signal])
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _paired(signal: str, pairs: Sequence[Pair]) -> Reading:
    diffs = []
    for p in pairs:
        v1, v2 = _figure(signal, p.v1), _figure(signal, p.v2)
        if v1 is None or v2 is None:
            continue
        if signal == "mos":
            diffs.append(v1 - v2)
        elif signal == "truncation":
            if v1 > 0:
                diffs.append(1.0 - v2 / v1)
        else:
            diffs.append(v2 - v1)
    what = "v1 - v2 pairs" if signal == "mos" else "v2 - v1 pairs"
    return _mean(diffs, what)


def _invalid_rate(cohort: str, pairs: Sequence[Pair]) -> Reading:
    def rate(side: str) -> tuple[float | None, int]:
        answers = [f for p in pairs if (f := p.side(side)) is not None]
        if not answers:
            return None, 0
        return sum(1 for f in answers if not f.get("valid")) / len(answers), len(answers)

    if cohort != "v2-v1":
        value, samples = rate(cohort)
        return Reading(value, samples, f"{samples} {cohort} answers" if samples else "no probes")
    v2, n2 = rate("v2")
    v1, n1 = rate("v1")
    if v2 is None or v1 is None:
        return Reading(None, min(n1, n2), "no probes")
    return Reading(v2 - v1, min(n1, n2), f"v2 {v2:.3g} ({n2}), v1 {v1:.3g} ({n1})")


def _mean(values: Sequence[float], what: str) -> Reading:
    if not values:
        return Reading(None, 0, f"no scored {what}")
    median = statistics.median(values)
    return Reading(
        statistics.fmean(values), len(values), f"{len(values)} {what}, median {median:.3g}"
    )


def http_get(url: str, timeout: float) -> bytes:
    """GET ``url``; the body (urllib errors are OSErrors)."""
    import urllib.request

    with urllib.request.urlopen(url, timeout=timeout) as response:
        body: bytes = response.read()
    return body


class QualitySource:
    """The quality guards' source: the probe process's ``/pairs`` over HTTP."""

    def __init__(
        self, base_url: str, horizon: float, *, fetch: Fetch = http_get, timeout: float = 2.0
    ) -> None:
        """``horizon``: the longest quality guard window (seconds)."""
        query = urllib.parse.urlencode({"horizon": f"{horizon:g}"})
        self.url = f"{base_url.rstrip('/')}/pairs?{query}"
        self.timeout = timeout
        self.last_error: str | None = None
        self._fetch = fetch
        self._pairs: tuple[Pair, ...] = ()
        self._total: int | None = None

    async def refresh(self) -> None:
        """Fetch the recent pairs once (or remember why not: the guards then hold)."""
        try:
            body = await asyncio.to_thread(self._fetch, self.url, self.timeout)
            answer = json.loads(body)
            pairs, total = parse_pairs(answer), round_count(answer)
        except (OSError, ValueError) as exc:
            if self.last_error is None:
                log.warning("probe process %s unreachable: %s", self.url, exc)
            self.last_error = str(exc) or type(exc).__name__
            return
        self.last_error = None
        self._pairs, self._total = pairs, total

    def paired_rounds(self) -> tuple[tuple[tuple[Pair, ...], int] | None, str]:
        """The rounds of the last fetch, newest first, and the newest round's number, for
        compare guards (which count each round once); None and why when there are none to
        trust."""
        if self.last_error is not None:
            return None, f"probe process unreachable: {self.last_error}"
        if self._total is None:
            return None, "the probe process does not number its rounds (no 'total')"
        return (self._pairs, self._total), ""

    def read(self, guard: Guard) -> Reading:
        if self.last_error is not None:
            return Reading(None, 0, f"probe process unreachable: {self.last_error}")
        return reading(guard, self._pairs)
