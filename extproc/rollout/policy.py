"""The ramp policy: strict YAML in, a frozen ``Policy`` out (same pipeline as the rules).

```yaml
policy:
  rollout: gpt-sovits-v2      # must equal rollout.name of the rules file
  initial_share: 10%          # at most 10 %
  step: 10%                   # points added per step
  step_interval: 2h
  rollback_share: 0%          # where a rollback goes (0 % or a small share)
  freeze:                     # the ramp never advances inside; rollback is never frozen
    timezone: Europe/Berlin
    windows: ["07:00-09:30", "18:00-22:00"]
  guards:
    - {name: v2-p95, signal: latency_p95, cohort: v2, threshold: 800ms, window: 60s,
       min_samples: 100}
    - {name: v2-errors, signal: error_rate, cohort: v2, threshold: 0.5%, window: 60s,
       min_samples: 200}
    - {name: p95-gap, signal: latency_p95, cohort: v2-v1, threshold: 200ms, window: 60s,
       min_samples: 100}
    - {name: mos-drop, signal: promql, query: 'avg(mos{model="v1"}) - avg(mos{model="v2"})',
       threshold: 0.2, window: 5m, min_samples: 1}
    - {name: v2-vs-v1-latency, compare: {metric: latency, margin: 10%, alpha: 1%},
       min_samples: 200}
```
A step never more than doubles the current share (a fixed rule, not a knob).

A ``compare`` guard judges v2 against v1 over the current stage with an always-valid
sequential test (docs/comparison-guards.md): it fails only when v2 is worse than v1 by more
than ``margin`` (relative: 10% = 1.1 x v1's latency or error rate) at confidence
``1 - alpha``, holds while either cohort has fewer than ``min_samples`` (default 100), and
passes otherwise. It takes no signal, cohort, threshold, window or query. The audio metrics
``mos``, ``asr_wer``, ``silence_ratio`` and ``clipping_ratio`` compare the probes' paired
figures (same text; samples are pairs): the margin is absolute, a number for ``mos`` (0.2 =
v2 up to 0.2 MOS below v1) and ``asr_wer``, percentage points for the ratios (``5%``).

Quality signals (read from the probe process, docs/audio-gate.md): ``mos`` (cohort v2 or v1:
breach *below* the threshold; cohort v2-v1: the drop v1 - v2, breach above), ``asr_wer``,
``silence_ratio``, ``clipping_ratio``, ``invalid_audio_rate`` (v2 or v1: the figure; v2-v1:
the mean paired difference v2 - v1 over the same texts) and ``truncation`` (v2-v1 only: how
much shorter v2 speaks the same text, ``1 - duration_v2 / duration_v1``). Ratios take a
percentage (``30%``), ``mos`` and ``asr_wer`` a plain number. ``source: live`` (default
``probes``) reads the same signals, except ``truncation``, from the sidecars' live sampling
figures instead: cohort means over the window, v2-v1 the gap of the two (unpaired).
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from dataclasses import dataclass
from pathlib import Path

from yaml.nodes import MappingNode, Node, ScalarNode

from extproc.core.bucket import BUCKETS
from extproc.core.fields import Reader
from extproc.core.yaml_source import compose, read_bytes
from extproc.rollout.notify.config import SinkSpec, parse_notify

MAX_INITIAL_SHARE = BUCKETS // 10  # 10 %
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_WINDOW = re.compile(r"(\d\d):(\d\d)-(\d\d):(\d\d)")
QUALITY_SIGNALS = (
    "mos",
    "asr_wer",
    "silence_ratio",
    "clipping_ratio",
    "invalid_audio_rate",
    "truncation",
)
RATIO_SIGNALS = ("silence_ratio", "clipping_ratio", "invalid_audio_rate", "truncation")
PAIRED_ONLY = ("truncation",)
#: Where an audio guard reads its figures: the probe process's pairs, or the sidecars' live
#: sampling figures (``tts_quality_live_*`` on their /metrics; docs/audio-gate.md).
QUALITY_SOURCES = ("probes", "live")
SIGNALS = ("latency_p95", "latency_p99", "error_rate", "promql", *QUALITY_SIGNALS)
COHORTS = ("v2", "v1", "v2-v1")
COMPARE = "compare"  # the signal of a compare guard
#: Audio figures a compare guard can judge on the probes' pairs, with the bound of one
#: paired difference (MOS 1..5; WER capped at 1 per answer; ratios 0..1).
PAIRED_BOUNDS = {"mos": 4.0, "asr_wer": 1.0, "silence_ratio": 1.0, "clipping_ratio": 1.0}
COMPARE_METRICS = ("latency", "error_rate", *PAIRED_BOUNDS)
ALPHA_RANGE = (1, BUCKETS // 10)  # 0.01 % .. 10 %, in buckets
COMPARE_MIN_SAMPLES = 100
PAIRED_MIN_SAMPLES = 20  # pairs: about 3 minutes of probes at the default 10 s interval


@dataclass(frozen=True, slots=True)
class Comparison:
    """v2 against v1: fail when v2 is worse than (1 + margin) x v1 at confidence 1 - alpha."""

    metric: str  # one of COMPARE_METRICS
    margin: float  # relative for latency and error_rate (0.1 = 10 %), else absolute points
    alpha: float  # 0.01 = 1 %

    @property
    def paired(self) -> bool:
        """An audio figure judged on the probes' pairs (same text), not Envoy's counts."""
        return self.metric in PAIRED_BOUNDS


@dataclass(frozen=True, slots=True)
class Guard:
    """Breach when the signal is above ``threshold``; hold with fewer than ``min_samples``."""

    name: str
    signal: str  # one of SIGNALS
    cohort: str  # one of COHORTS (ignored for promql)
    threshold: float  # seconds for latency, a ratio for error_rate, raw for promql
    window: float  # seconds
    min_samples: int
    query: str = ""
    compare: Comparison | None = None  # set for signal COMPARE (then cohort is "v2-v1")
    source: str = ""  # audio signals: one of QUALITY_SOURCES ("probes" unless set); else ""

    @property
    def lower_is_worse(self) -> bool:
        """True for a score judged on one cohort (``mos`` of v2): it breaches *below*."""
        return self.signal == "mos" and self.cohort != "v2-v1"


@dataclass(frozen=True, slots=True)
class FreezeWindow:
    start: dt.time
    end: dt.time  # may be before start: the window spans midnight

    def contains(self, moment: dt.time) -> bool:
        if self.start <= self.end:
            return self.start <= moment < self.end
        return moment >= self.start or moment < self.end


@dataclass(frozen=True, slots=True)
class Policy:
    rollout: str
    initial_share: int  # buckets
    step: int  # buckets
    step_interval: float  # seconds
    rollback_share: int  # buckets
    timezone: str = "UTC"
    freeze: tuple[FreezeWindow, ...] = ()
    guards: tuple[Guard, ...] = ()
    source: str = ""
    notify: tuple[SinkSpec, ...] = ()  # notification sinks (extproc/rollout/notify/config.py)

    def frozen_at(self, now: dt.datetime) -> bool:
        """True if ``now`` (aware) falls in a freeze window of the policy's time zone."""
        local = now.astimezone(zoneinfo.ZoneInfo(self.timezone)).time()
        return any(w.contains(local) for w in self.freeze)

    def next_share(self, share: int) -> int:
        """The share after one step: + step, never more than double, at most 100 %."""
        return min(share + self.step, max(share * 2, 1), BUCKETS)


def load_policy(path: str | Path) -> Policy:
    path = Path(path)
    return parse_policy(str(path), read_bytes(path))


def parse_policy(name: str, data: bytes) -> Policy:
    r = Reader(name)
    top = r.mapping(compose(name, data), "", ("policy",), ("policy",))
    keys = (
        "rollout",
        "initial_share",
        "step",
        "step_interval",
        "rollback_share",
        "freeze",
        "guards",
        "notify",
    )
    m = r.mapping(top["policy"], "policy", keys, ("rollout", "initial_share"))
    initial = r.share(m["initial_share"], "policy.initial_share")
    if initial > MAX_INITIAL_SHARE:
        r.fail(m["initial_share"], "policy.initial_share", "must be at most 10%")
    if initial == 0:
        r.fail(m["initial_share"], "policy.initial_share", "must be above 0%")
    step = r.share(m["step"], "policy.step") if "step" in m else BUCKETS // 10
    if step == 0:
        r.fail(m["step"], "policy.step", "must be above 0%")
    rollback = r.share(m["rollback_share"], "policy.rollback_share") if "rollback_share" in m else 0
    if rollback > initial:
        r.fail(m["rollback_share"], "policy.rollback_share", "must not exceed initial_share")
    timezone, windows = _freeze(r, m.get("freeze"))
    return Policy(
        rollout=r.string(m["rollout"], "policy.rollout", pattern=_NAME),
        initial_share=initial,
        step=step,
        step_interval=(
            duration(r, m["step_interval"], "policy.step_interval")
            if "step_interval" in m
            else 7200.0
        ),
        rollback_share=rollback,
        timezone=timezone,
        freeze=windows,
        guards=_guards(r, m.get("guards")),
        source=name,
        notify=parse_notify(r, m.get("notify")),
    )


def duration(r: Reader, node: Node, path: str) -> float:
    """'800ms', '60s', '5m', '2h' -> seconds (> 0)."""
    if isinstance(node, ScalarNode) and node.tag.endswith((":int", ":float")):
        r.fail(node, path, f"{node.value!r} has no unit; write it like 800ms, 60s, 5m or 2h")
    text = r.string(node, path)
    match = _DURATION.fullmatch(text.strip())
    if not match or float(match.group(1)) <= 0:
        r.fail(node, path, f"{text!r} is not a duration like 800ms, 60s, 5m or 2h")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def _freeze(r: Reader, node: Node | None) -> tuple[str, tuple[FreezeWindow, ...]]:
    if node is None:
        return "UTC", ()
    m = r.mapping(node, "policy.freeze", ("timezone", "windows"), ("windows",))
    timezone = "UTC"
    if "timezone" in m:
        timezone = r.string(m["timezone"], "policy.freeze.timezone")
        try:
            zoneinfo.ZoneInfo(timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            r.fail(m["timezone"], "policy.freeze.timezone", f"unknown time zone {timezone!r}")
    windows = []
    items = r.sequence(m["windows"], "policy.freeze.windows")
    for i, item in enumerate(items):
        path = f"policy.freeze.windows[{i}]"
        text = r.string(item, path)
        match = _WINDOW.fullmatch(text)
        hours = [int(g) for g in match.groups()] if match else []
        if not match or hours[0] > 23 or hours[2] > 23 or hours[1] > 59 or hours[3] > 59:
            r.fail(item, path, f"{text!r} is not a daily window like '07:00-09:30'")
        start, end = dt.time(hours[0], hours[1]), dt.time(hours[2], hours[3])
        if start == end:
            r.fail(item, path, f"{text!r} is empty")
        windows.append(FreezeWindow(start, end))
    return timezone, tuple(windows)


def _guards(r: Reader, node: Node | None) -> tuple[Guard, ...]:
    if node is None:
        return ()
    out: list[Guard] = []
    names: set[str] = set()
    for i, item in enumerate(r.sequence(node, "policy.guards")):
        path = f"policy.guards[{i}]"
        if _has_key(item, COMPARE):
            m = r.mapping(item, path, ("name", COMPARE, "min_samples"), ("name", COMPARE))
        else:
            keys = (
                "name", "signal", "cohort", "threshold", "window", "min_samples", "query",
                "source",
            )  # fmt: skip
            m = r.mapping(item, path, keys, ("name", "signal", "threshold", "window"))
        name = r.string(m["name"], f"{path}.name", pattern=_NAME)
        if name in names:
            r.fail(m["name"], f"{path}.name", f"duplicate guard name {name!r}")
        names.add(name)
        if COMPARE in m:
            out.append(_compare_guard(r, m, path, name))
            continue
        signal = r.string(m["signal"], f"{path}.signal")
        if signal not in SIGNALS:
            r.fail(
                m["signal"],
                f"{path}.signal",
                f"{signal!r} is not a signal; allowed: {', '.join(SIGNALS)}",
            )
        cohort = r.string(m["cohort"], f"{path}.cohort") if "cohort" in m else "v2"
        if cohort not in COHORTS:
            r.fail(
                m["cohort"],
                f"{path}.cohort",
                f"{cohort!r} is not a cohort; allowed: {', '.join(COHORTS)}",
            )
        if signal in PAIRED_ONLY and cohort != "v2-v1":
            r.fail(
                m.get("cohort", item),
                f"{path}.cohort",
                f"signal {signal} compares v2 with v1 on the same texts: cohort must be v2-v1",
            )
        query = r.string(m["query"], f"{path}.query") if "query" in m else ""
        if (signal == "promql") != bool(query):
            r.fail(item, path, "a 'query' is required for signal promql and only for it")
        source = _source(r, m, path, signal)
        out.append(
            Guard(
                name=name,
                signal=signal,
                cohort=cohort,
                threshold=_threshold(r, m["threshold"], f"{path}.threshold", signal),
                window=duration(r, m["window"], f"{path}.window"),
                min_samples=(
                    r.integer(m["min_samples"], f"{path}.min_samples", 1, 10**9)
                    if "min_samples" in m
                    else 1
                ),
                query=query,
                source=source,
            )
        )
    return tuple(out)


def _source(r: Reader, m: dict[str, Node], path: str, signal: str) -> str:
    """An audio guard's source (``probes`` unless set); only audio signals take one."""
    if signal not in QUALITY_SIGNALS:
        if "source" in m:
            r.fail(m["source"], f"{path}.source", "only audio signals take a source")
        return ""
    if "source" not in m:
        return "probes"
    source = r.string(m["source"], f"{path}.source")
    if source not in QUALITY_SOURCES:
        allowed = ", ".join(QUALITY_SOURCES)
        r.fail(m["source"], f"{path}.source", f"{source!r} is not a source; allowed: {allowed}")
    if source == "live" and signal in PAIRED_ONLY:
        r.fail(
            m["source"],
            f"{path}.source",
            f"signal {signal} needs the same text from both models: only the probes have it",
        )
    return source


def _threshold(r: Reader, node: Node, path: str, signal: str) -> float:
    if signal.startswith("latency"):
        return duration(r, node, path)
    if signal == "error_rate":
        return r.share(node, path) / BUCKETS
    if signal in RATIO_SIGNALS:
        if not isinstance(node, ScalarNode) or node.tag.endswith((":int", ":float")):
            r.fail(node, path, f"signal {signal} is a ratio: write it as a percentage like '30%'")
        return r.share(node, path) / BUCKETS
    if not isinstance(node, ScalarNode) or not node.tag.endswith((":int", ":float")):
        r.fail(node, path, "expected a number")
    return float(node.value)


def _margin(r: Reader, node: Node, path: str, metric: str) -> float:
    """Relative for latency and error rates; MOS and WER points; ratios in percentage
    points (``5%`` = 0.05), below the bound of one difference."""
    if metric not in PAIRED_BOUNDS:
        return r.share(node, path) / BUCKETS
    margin = _threshold(r, node, path, metric)
    bound = PAIRED_BOUNDS[metric]
    if not 0 <= margin < bound:
        r.fail(node, path, f"margin for {metric} must be at least 0 and below {bound:g}")
    return margin


def _has_key(node: Node, key: str) -> bool:
    return isinstance(node, MappingNode) and any(
        isinstance(k, ScalarNode) and k.value == key for k, _ in node.value
    )


def _compare_guard(r: Reader, m: dict[str, Node], path: str, name: str) -> Guard:
    where = f"{path}.{COMPARE}"
    c = r.mapping(m[COMPARE], where, ("metric", "margin", "alpha"), ("metric", "margin"))
    metric = r.string(c["metric"], f"{where}.metric")
    if metric not in COMPARE_METRICS:
        allowed = ", ".join(COMPARE_METRICS)
        r.fail(c["metric"], f"{where}.metric", f"{metric!r} is not a metric; allowed: {allowed}")
    margin = _margin(r, c["margin"], f"{where}.margin", metric)
    alpha = BUCKETS // 100
    if "alpha" in c:
        alpha = r.share(c["alpha"], f"{where}.alpha")
        if not ALPHA_RANGE[0] <= alpha <= ALPHA_RANGE[1]:
            r.fail(c["alpha"], f"{where}.alpha", "must be between 0.01% and 10%")
    return Guard(
        name=name,
        signal=COMPARE,
        cohort="v2-v1",
        threshold=margin,
        window=0.0,
        min_samples=(
            r.integer(m["min_samples"], f"{path}.min_samples", 1, 10**9)
            if "min_samples" in m
            else (PAIRED_MIN_SAMPLES if metric in PAIRED_BOUNDS else COMPARE_MIN_SAMPLES)
        ),
        compare=Comparison(metric=metric, margin=margin, alpha=alpha / BUCKETS),
    )
