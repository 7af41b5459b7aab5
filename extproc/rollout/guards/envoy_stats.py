"""Envoy's per-cluster stats, pure: parse ``/stats/prometheus`` text, diff two scrapes, and
read latency quantiles and error rates from the difference.

Checked against Envoy 1.40's admin output: counters are live, but histograms (here
``envoy_cluster_upstream_rq_time_bucket``, in milliseconds, cumulative ``le`` buckets) change
only when Envoy merges them at its stats flush (``stats_flush_interval``, default 5 s; or at
each admin read with ``stats_flush_on_admin``). A latency window should therefore span at
least one flush interval. The series used, per cluster ``envoy_cluster_name="NAME"``:

- ``envoy_cluster_upstream_rq_completed``: requests completed (the error-rate denominator);
- ``envoy_cluster_upstream_rq_xx{envoy_response_code_class="5"}``: 5xx answers, those Envoy
  made up for the upstream (connect failure, timeout) included; absent until the first one;
- ``envoy_cluster_upstream_rq_time_bucket{le=...}``: the upstream request time histogram.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass

COMPLETED = "envoy_cluster_upstream_rq_completed"
BY_CLASS = "envoy_cluster_upstream_rq_xx"
TIME_BUCKET = "envoy_cluster_upstream_rq_time_bucket"
WANTED = (COMPLETED, BY_CLASS, TIME_BUCKET)
#: Envoy admin filter (on Envoy's own stat names) that keeps the output small.
ADMIN_FILTER = r"^cluster\.[^.]+\.upstream_rq_(completed|time|[1-5]xx)$"

_LINE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def labelled_samples(
    text: str, prefixes: str | tuple[str, ...]
) -> Iterator[tuple[str, dict[str, str], float]]:
    """(name, labels, value) of every labelled sample in a Prometheus text exposition whose
    name starts with ``prefixes``; other lines, unparsable values and NaN are skipped."""
    for line in text.splitlines():
        if not line.startswith(prefixes):
            continue
        match = _LINE.match(line)
        if match is None:
            continue
        name, raw_labels, raw_value = match.groups()
        try:
            value = float(raw_value)
        except ValueError:
            continue
        if not math.isnan(value):
            yield name, dict(_LABEL.findall(raw_labels)), value


@dataclass(frozen=True, slots=True)
class ClusterCounts:
    """Cumulative counts of one cluster at one scrape (or the difference of two)."""

    completed: float = 0.0
    errors: float = 0.0  # 5xx
    buckets: tuple[tuple[float, float], ...] = ()  # (upper bound in ms, cumulative count)

    @property
    def timed(self) -> float:
        """Requests in the latency histogram (its +Inf bucket)."""
        return self.buckets[-1][1] if self.buckets else 0.0


Scrape = dict[str, ClusterCounts]


def parse_scrape(text: str) -> Scrape:
    """The clusters' counts in a Prometheus text exposition from Envoy's admin.
    Lines it does not need are skipped; a cluster with no series is absent."""
    completed: dict[str, float] = {}
    errors: dict[str, float] = {}
    buckets: dict[str, list[tuple[float, float]]] = {}
    for name, labels, value in labelled_samples(text, WANTED):
        cluster = labels.get("envoy_cluster_name")
        if cluster is None:
            continue
        if name == COMPLETED:
            completed[cluster] = value
        elif name == BY_CLASS and labels.get("envoy_response_code_class") == "5":
            errors[cluster] = value
        elif name == TIME_BUCKET and "le" in labels:
            buckets.setdefault(cluster, []).append((float(labels["le"]), value))
    clusters = set(completed) | set(errors) | set(buckets)
    return {
        c: ClusterCounts(
            completed.get(c, 0.0), errors.get(c, 0.0), tuple(sorted(buckets.get(c, [])))
        )
        for c in clusters
    }


def difference(new: ClusterCounts, old: ClusterCounts) -> ClusterCounts | None:
    """``new - old``; None if a count went down or the bucket bounds changed (Envoy restarted
    or was reconfigured), since then the two scrapes cannot be compared."""
    if old.buckets and [le for le, _ in old.buckets] != [le for le, _ in new.buckets]:
        return None
    before = dict(old.buckets)
    buckets = tuple((le, n - before.get(le, 0.0)) for le, n in new.buckets)
    delta = ClusterCounts(new.completed - old.completed, new.errors - old.errors, buckets)
    if delta.completed < 0 or delta.errors < 0 or any(n < 0 for _, n in buckets):
        return None
    return delta


def quantile_ms(q: float, buckets: tuple[tuple[float, float], ...]) -> float | None:
    """The ``q`` quantile (0 < q < 1) of cumulative buckets, interpolated linearly within its
    bucket as Prometheus' histogram_quantile does (the first bucket starts at 0; a rank in
    the +Inf bucket gives the highest finite bound). None without any observation."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for upper, cumulative in buckets:
        if cumulative >= rank and cumulative > below:
            if math.isinf(upper):
                return lower
            return lower + (upper - lower) * (rank - below) / (cumulative - below)
        lower, below = upper, cumulative
    return lower


def error_rate(delta: ClusterCounts) -> float | None:
    """5xx / completed over a difference; None without completed requests."""
    return delta.errors / delta.completed if delta.completed > 0 else None
