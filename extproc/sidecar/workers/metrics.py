"""One /metrics for ``extproc serve --workers N``: every worker's samples, labelled by worker.

Each worker serves its own registry on a private loopback port. On each scrape of the
supervisor, :class:`WorkerExpositions` fetches every ready worker's exposition in parallel
(each bounded by ``timeout``), parses it with prometheus_client's parser and yields one family
per metric name (HELP and TYPE once) whose samples carry an extra label ``worker="0".."N-1"``,
after the supervisor's own metrics. A worker that does not answer in time is left out of
that scrape, and ``tts_canary_workers_up`` says how many answered.

Sum over ``worker`` for the sidecar's totals (``sum without (worker) (rate(...))``):
counters restart at 0 with a restarted worker, which ``rate`` handles as a counter reset.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor, wait

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from extproc.telemetry.metrics import SupervisorMetrics

WORKER_LABEL = "worker"
#: worker index -> its metrics port, for the workers that are ready now.
Targets = Callable[[], Mapping[int, int]]


def merge(expositions: Mapping[int, str]) -> list[Metric]:
    """Families of all ``expositions`` (worker index -> text), each sample labelled with its
    worker; families in the order first seen, samples by worker."""
    families: dict[str, Metric] = {}
    for index in sorted(expositions):
        for family in text_string_to_metric_families(expositions[index]):
            merged = families.get(family.name)
            if merged is None:
                merged = Metric(family.name, family.documentation, family.type, family.unit)
                families[family.name] = merged
            for sample in family.samples:
                labels = {**sample.labels, WORKER_LABEL: str(index)}
                merged.add_sample(sample.name, labels, sample.value, sample.timestamp)
    return list(families.values())


def fetch(port: int, timeout: float) -> str:
    url = f"http://127.0.0.1:{port}/metrics"
    with urllib.request.urlopen(url, timeout=timeout) as reply:
        return str(reply.read().decode("utf-8"))


class WorkerExpositions(Collector):
    """The collector behind the supervisor's /metrics (see the module docstring)."""

    def __init__(self, targets: Targets, metrics: SupervisorMetrics, timeout: float) -> None:
        self._targets = targets
        self._metrics = metrics
        self._timeout = timeout
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="scrape")

    def scrape(self) -> dict[int, str]:
        """Worker index -> exposition, for the workers that answered within the timeout."""
        futures = {
            index: self._pool.submit(fetch, port, self._timeout)
            for index, port in self._targets().items()
        }
        wait(futures.values(), timeout=self._timeout + 0.5)
        answered = {}
        for index, future in futures.items():
            if future.done() and future.exception() is None:
                answered[index] = future.result()
        self._metrics.record_scrape(len(answered))
        return answered

    def collect(self) -> Iterator[Metric]:
        expositions = self.scrape()  # first: the workers_up gauge below is this scrape's
        yield from self._metrics.registry.collect()
        yield from merge(expositions)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
