"""Guard sources: Envoy's admin stats (the embedded default) and the Prometheus HTTP API.

Each source does its I/O in ``refresh()`` (once per check, in a worker thread so the
controller's loop never blocks) and answers ``read(guard)`` from what it holds. A source
that cannot be reached reads as "no data", so its guards hold: an outage of the
measurement never advances the ramp and never rolls it back.

- :class:`EnvoyStatsSource` scrapes ``/stats/prometheus`` of one Envoy, keeps a bounded
  ring of timestamped scrapes (monotonic time) and reads a guard over its window: the
  difference between the newest scrape and the newest one at least ``window`` older (or
  the oldest held, while the ring is younger than the window). If a count goes down (Envoy
  restarted) the ring starts over.
- :class:`PrometheusSource` runs each PromQL guard's query as an instant query
  (``/api/v1/query``). The value is the worst (highest) series, samples the number of
  series; an empty result or NaN (e.g. a ratio over no traffic) is no data. The query
  carries its own range (``rate(x[5m])``); the guard's ``window`` is informational.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import urllib.error
import urllib.parse
import urllib.request
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from extproc.rollout.clock import Clock
from extproc.rollout.guards.envoy_stats import (
    ADMIN_FILTER,
    ClusterCounts,
    Scrape,
    difference,
    error_rate,
    parse_scrape,
    quantile_ms,
)
from extproc.rollout.guards.judge import Reading
from extproc.rollout.policy import Guard

log = logging.getLogger("extproc.rollout.guards.signals")

DEFAULT_ENVOY_ADMIN = "http://127.0.0.1:9901"
DEFAULT_CLUSTERS: Mapping[str, str] = {"v1": "tts_v1", "v2": "tts_v2"}
QUANTILES = {"latency_p95": 0.95, "latency_p99": 0.99}
MAX_SCRAPES = 10_000

Fetch = Callable[[str, float], bytes]


def http_get(url: str, timeout: float) -> bytes:
    """GET ``url``; the body (urllib errors are OSErrors)."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        body: bytes = response.read()
    return body


class EnvoyStatsSource:
    """Latency and error signals of the v1 / v2 clusters from one Envoy's admin endpoint."""

    def __init__(
        self,
        admin_url: str,
        clock: Clock,
        horizon: float,
        *,
        clusters: Mapping[str, str] = DEFAULT_CLUSTERS,
        fetch: Fetch = http_get,
        timeout: float = 2.0,
    ) -> None:
        """``horizon``: the longest guard window (seconds); older scrapes are dropped."""
        self.url = (
            admin_url.rstrip("/")
            + "/stats/prometheus?"
            + urllib.parse.urlencode({"filter": ADMIN_FILTER})
        )
        self.clock = clock
        self.horizon = horizon
        self.clusters = dict(clusters)
        self.timeout = timeout
        self.last_error: str | None = None
        self._fetch = fetch
        self._ring: deque[tuple[float, Scrape]] = deque(maxlen=MAX_SCRAPES)

    async def refresh(self) -> None:
        """Scrape once and remember it (or remember why not)."""
        try:
            body = await asyncio.to_thread(self._fetch, self.url, self.timeout)
            scrape = parse_scrape(body.decode("utf-8", errors="replace"))
        except (OSError, ValueError) as exc:
            if self.last_error is None:
                log.warning("envoy admin %s unreachable: %s", self.url, exc)
            self.last_error = str(exc) or type(exc).__name__
            return
        self.add(self.clock.monotonic(), scrape)

    def add(self, at: float, scrape: Scrape) -> None:
        """Append a scrape taken at monotonic time ``at``."""
        self.last_error = None
        if self._ring and _went_down(self._ring[-1][1], scrape):
            log.warning("envoy counters went down (restarted?): guard windows start over")
            self._ring.clear()
        self._ring.append((at, scrape))
        while len(self._ring) >= 2 and self._ring[1][0] <= at - self.horizon:
            self._ring.popleft()

    def read(self, guard: Guard) -> Reading:
        """The guard's signal over its window, ending at the newest scrape."""
        if self.last_error is not None:
            return Reading(None, 0, f"envoy admin unreachable: {self.last_error}")
        if len(self._ring) < 2:
            return Reading(None, 0, "waiting for two scrapes of envoy stats")
        now, newest = self._ring[-1]
        since, oldest = self._baseline(now - guard.window)
        span = f"over {now - since:.1f}s"
        if guard.cohort != "v2-v1":
            reading = self._cohort(guard, guard.cohort, oldest, newest)
            return Reading(reading.value, reading.samples, f"{reading.detail} {span}".strip())
        v2 = self._cohort(guard, "v2", oldest, newest)
        v1 = self._cohort(guard, "v1", oldest, newest)
        samples = min(v2.samples, v1.samples)
        if v2.value is None or v1.value is None:
            return Reading(None, samples, f"v2: {v2.detail}; v1: {v1.detail}")
        detail = f"v2 {v2.value:.4g} ({v2.samples}), v1 {v1.value:.4g} ({v1.samples}) {span}"
        return Reading(v2.value - v1.value, samples, detail)

    def cohort_totals(self) -> tuple[dict[str, ClusterCounts] | None, str]:
        """Each cohort's cumulative counts at the newest scrape (compare guards diff them
        against the stage's first), or None and why."""
        if self.last_error is not None:
            return None, f"envoy admin unreachable: {self.last_error}"
        if not self._ring:
            return None, "waiting for a scrape of envoy stats"
        newest = self._ring[-1][1]
        missing = [c for c in self.clusters.values() if c not in newest]
        if missing:
            return None, f"envoy has no stats for cluster {', '.join(sorted(missing))}"
        return {cohort: newest[c] for cohort, c in self.clusters.items()}, ""

    def _baseline(self, start: float) -> tuple[float, Scrape]:
        for at, scrape in reversed(self._ring):
            if at <= start:
                return at, scrape
        return self._ring[0]

    def _cohort(self, guard: Guard, cohort: str, old: Scrape, new: Scrape) -> Reading:
        cluster = self.clusters[cohort]
        if cluster not in new:
            return Reading(None, 0, f"envoy has no stats for cluster {cluster}")
        delta = difference(new[cluster], old.get(cluster, ClusterCounts()))
        if delta is None:
            return Reading(None, 0, f"counts of {cluster} went down")
        if guard.signal in QUANTILES:
            ms = quantile_ms(QUANTILES[guard.signal], delta.buckets)
            value = None if ms is None else ms / 1000.0
            return Reading(value, int(delta.timed), "" if ms is not None else "no requests")
        rate = error_rate(delta)
        return Reading(rate, int(delta.completed), "" if rate is not None else "no requests")


def _went_down(old: Scrape, new: Scrape) -> bool:
    return any(difference(new[c], old[c]) is None for c in old.keys() & new.keys())


class PrometheusSource:
    """PromQL guards against one Prometheus server's HTTP API."""

    def __init__(
        self,
        base_url: str,
        queries: Iterable[str],
        *,
        fetch: Fetch = http_get,
        timeout: float = 5.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.queries = tuple(dict.fromkeys(queries))
        self.timeout = timeout
        self._fetch = fetch
        self._readings: dict[str, Reading] = {}

    async def refresh(self) -> None:
        """Run every query once, concurrently."""
        readings = await asyncio.gather(*(asyncio.to_thread(self.query, q) for q in self.queries))
        self._readings = dict(zip(self.queries, readings, strict=True))

    def read(self, guard: Guard) -> Reading:
        return self._readings.get(guard.query, Reading(None, 0, "not queried yet"))

    def query(self, promql: str) -> Reading:
        """One instant query (blocking); never raises for the server's or network's faults."""
        url = f"{self.base_url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
        try:
            body = self._fetch(url, self.timeout)
        except urllib.error.HTTPError as exc:  # 400/422/503 carry a JSON error body
            body = exc.read()
        except OSError as exc:
            return Reading(None, 0, f"prometheus unreachable: {exc}")
        try:
            return reading_of(json.loads(body))
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            return Reading(None, 0, f"prometheus answered something else: {exc!r}")


def reading_of(answer: dict[str, Any]) -> Reading:
    """The reading in a ``/api/v1/query`` answer (see the module docstring)."""
    if answer.get("status") != "success":
        return Reading(None, 0, f"query failed: {answer.get('errorType')}: {answer.get('error')}")
    data = answer["data"]
    kind = data["resultType"]
    if kind == "vector":
        values = [float(series["value"][1]) for series in data["result"]]
    elif kind == "scalar":
        values = [float(data["result"][1])]
    else:
        return Reading(None, 0, f"query gave a {kind}; want an instant vector or a scalar")
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return Reading(None, 0, "no data")
    return Reading(max(values), len(values), f"{len(values)} series")
