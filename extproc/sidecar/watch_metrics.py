"""The etcd state watch's health as Prometheus metrics, read when Prometheus scrapes.

A sidecar that follows the rollout state in etcd (``--state etcd://...``) exports:

- ``tts_canary_state_watch_connected``: 1 while the watch follows etcd (its last read
  succeeded and the watch is open), 0 from the first failure until a read succeeds again
  (meanwhile the last state keeps serving) and before etcd first answered;
- ``tts_canary_state_watch_faults_total{class}``: failed reads and watches by class
  (``extproc.rollout.stores.etcd_faults.Fault``, and ``unexpected`` for what is not
  etcd's), every class present from the start at 0; each retry during an outage counts;
- ``tts_canary_state_watch_rejected_total``: values under the state key that were not a
  rollout state (logged, skipped, the last state kept).

Nothing is recorded on the decision path: the collector reads the watch's own counters.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from extproc.rollout.stores.etcd_faults import UNEXPECTED, Fault

if TYPE_CHECKING:
    from extproc.rollout.stores.etcd_watch import StateWatch

#: Every class a fault is counted under, in a stable order.
CLASSES = (*(fault.value for fault in Fault), UNEXPECTED)


class StateWatchCollector(Collector):
    """Reads one StateWatch's counters at each scrape (another thread updates them; the
    copy of the counter is one C-level call under the GIL)."""

    def __init__(self, watch: StateWatch) -> None:
        self._watch = watch

    def collect(self) -> Iterable[Metric]:
        watch = self._watch
        connected = GaugeMetricFamily(
            "tts_canary_state_watch_connected",
            "1 while the sidecar follows the rollout state in etcd, 0 while it cannot "
            "(the last state keeps serving).",
        )
        connected.add_metric([], 1.0 if watch.connected else 0.0)
        faults = CounterMetricFamily(
            "tts_canary_state_watch_faults",
            "Failed etcd reads and watches of the rollout state, by fault class.",
            labels=("class",),
        )
        counts = dict(watch.faults)
        for name in CLASSES:
            faults.add_metric([name], float(counts.get(name, 0)))
        rejected = CounterMetricFamily(
            "tts_canary_state_watch_rejected",
            "Values under the rollout state key that were not a rollout state (skipped).",
        )
        rejected.add_metric([], float(watch.rejected))
        return [connected, faults, rejected]
