"""The controller's guard figures as Prometheus metrics: every metric the controller exports is
declared here. A custom collector reads the controller's last evaluation at scrape time, so
nothing is registered globally and a scrape never sees half of a check.

- ``tts_canary_guard_verdict{guard, verdict}``: 1 for the guard's verdict at the last check
  (pass, hold, fail), 0 for the others;
- ``tts_canary_guard_samples{guard}``: the samples the guard judged (the smaller cohort for
  a compare guard);
- compare guards only (extproc/rollout/guards/comparison.py):
  ``tts_canary_compare_effect{guard, metric, bound}`` (bound ``estimate``, ``low``, ``high``:
  the relative change of v2 against v1 and its confidence sequence; a bound absent while
  unbounded), ``tts_canary_compare_margin{guard, metric}``,
  ``tts_canary_compare_p_value{guard, metric}`` (anytime-valid), ``tts_canary_compare_alpha``,
  ``tts_canary_compare_e_value`` and ``tts_canary_compare_cohort_samples{guard, cohort}``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from extproc.rollout.guards.judge import Evaluation
from extproc.rollout.state import Verdict

VERDICTS = tuple(v.value for v in Verdict)


class GuardCollector(Collector):
    """Collects the figures of ``last()`` (None before the first check: nothing)."""

    def __init__(self, last: Callable[[], Evaluation | None]) -> None:
        self._last = last

    def collect(self) -> Iterator[Metric]:
        evaluation = self._last()
        figures = evaluation.figures if evaluation else ()
        verdict = GaugeMetricFamily(
            "tts_canary_guard_verdict",
            "1 for each guard's verdict at the last check (pass, hold, fail), 0 for the others",
            labels=["guard", "verdict"],
        )
        samples = GaugeMetricFamily(
            "tts_canary_guard_samples", "Samples each guard judged", labels=["guard"]
        )
        effect = GaugeMetricFamily(
            "tts_canary_compare_effect",
            "Compare guards: relative change of v2 against v1 (0.2 = 20 % worse), with the "
            "bounds of its confidence sequence",
            labels=["guard", "metric", "bound"],
        )
        margin = GaugeMetricFamily(
            "tts_canary_compare_margin", "Compare guards: the margin", labels=["guard", "metric"]
        )
        p_value = GaugeMetricFamily(
            "tts_canary_compare_p_value",
            "Compare guards: anytime-valid p-value of 'v2 worse than v1 by more than the margin'",
            labels=["guard", "metric"],
        )
        alpha = GaugeMetricFamily(
            "tts_canary_compare_alpha",
            "Compare guards: the p-value at or below which the guard fails",
            labels=["guard", "metric"],
        )
        e_value = GaugeMetricFamily(
            "tts_canary_compare_e_value",
            "Compare guards: the last check's mixture likelihood ratio at the margin",
            labels=["guard", "metric"],
        )
        cohort_samples = GaugeMetricFamily(
            "tts_canary_compare_cohort_samples",
            "Compare guards: requests of each cohort in the stage so far",
            labels=["guard", "cohort"],
        )
        for f in figures:
            for name in VERDICTS:
                verdict.add_metric([f.guard, name], 1.0 if f.verdict.value == name else 0.0)
            samples.add_metric([f.guard], float(f.samples))
            if not f.metric:
                continue
            for bound, value in (("estimate", f.value), ("low", f.low), ("high", f.high)):
                if value is not None:
                    effect.add_metric([f.guard, f.metric, bound], value)
            margin.add_metric([f.guard, f.metric], f.threshold)
            if f.p_value is not None:
                p_value.add_metric([f.guard, f.metric], f.p_value)
            if f.alpha is not None:
                alpha.add_metric([f.guard, f.metric], f.alpha)
            if f.e_value is not None:
                e_value.add_metric([f.guard, f.metric], f.e_value)
            for cohort, count in (("v2", f.samples_v2), ("v1", f.samples_v1)):
                if count is not None:
                    cohort_samples.add_metric([f.guard, cohort], float(count))
        yield from (verdict, samples, effect, margin, p_value, alpha, e_value, cohort_samples)


def guard_registry(last: Callable[[], Evaluation | None]) -> CollectorRegistry:
    """A private registry holding only the guard collector."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(GuardCollector(last))
    return registry
