"""A stand-in for Envoy's admin ``/stats/prometheus``: cumulative per-cluster counts rendered
in Envoy 1.40's exposition format (the same series and label order as
tests/fixtures/envoy_stats_prometheus.txt, captured from the real one).

    envoy = FakeEnvoyStats()
    envoy.serve("tts_v2", 100, latency_ms=40, errors=1)
    text = envoy.text()
"""

from __future__ import annotations

from dataclasses import dataclass, field

# The bucket bounds of envoy/envoy.yaml's stats_config for the TTS clusters' upstream_rq_time.
BOUNDS_MS: tuple[int, ...] = (5, 10, 25, 50, 100, 200, 300, 400, 500, 600, 700, 800, 1000)
BOUNDS_MS += (1500, 2000, 3000, 5000, 10000, 30000, 60000)


@dataclass
class _Cluster:
    completed: int = 0
    errors: int = 0
    latencies_ms: list[float] = field(default_factory=list)


class FakeEnvoyStats:
    """Counts only grow, as in Envoy, until :meth:`restart`."""

    def __init__(self, clusters: tuple[str, ...] = ("tts_v1", "tts_v2")) -> None:
        self._clusters = {name: _Cluster() for name in clusters}
        self.fetched: list[str] = []

    def serve(self, cluster: str, requests: int, *, latency_ms: float, errors: int = 0) -> None:
        """Record ``requests`` completed requests of ``latency_ms``, ``errors`` of them 5xx."""
        counts = self._clusters[cluster]
        counts.completed += requests
        counts.errors += errors
        counts.latencies_ms.extend([latency_ms] * requests)

    def restart(self) -> None:
        """Envoy restarted: every count is back to zero."""
        self._clusters = {name: _Cluster() for name in self._clusters}

    def text(self) -> str:
        lines = ["# TYPE envoy_cluster_upstream_rq_completed counter"]
        for name, c in self._clusters.items():
            lines.append(
                f'envoy_cluster_upstream_rq_completed{{envoy_cluster_name="{name}"}} {c.completed}'
            )
        lines.append("# TYPE envoy_cluster_upstream_rq_xx counter")
        xx = "envoy_cluster_upstream_rq_xx{envoy_response_code_class"
        for name, c in self._clusters.items():
            label = f'envoy_cluster_name="{name}"'
            lines.append(f'{xx}="2",{label}}} {c.completed - c.errors}')
            if c.errors:  # like Envoy: no 5xx series before the first 5xx
                lines.append(f'{xx}="5",{label}}} {c.errors}')
        lines.append("# TYPE envoy_cluster_upstream_rq_time histogram")
        for name, c in self._clusters.items():
            label = f'envoy_cluster_name="{name}"'
            for bound in BOUNDS_MS:
                below = sum(1 for ms in c.latencies_ms if ms <= bound)
                lines.append(
                    f'envoy_cluster_upstream_rq_time_bucket{{{label},le="{bound}"}} {below}'
                )
            total = len(c.latencies_ms)
            lines.append(f'envoy_cluster_upstream_rq_time_bucket{{{label},le="+Inf"}} {total}')
            lines.append(f"envoy_cluster_upstream_rq_time_sum{{{label}}} {sum(c.latencies_ms)}")
            lines.append(f"envoy_cluster_upstream_rq_time_count{{{label}}} {total}")
        return "\n".join(lines) + "\n"

    def fetch(self, url: str, timeout: float) -> bytes:
        """A ``signals.Fetch``: the current text (and the URL asked for is remembered)."""
        self.fetched.append(url)
        return self.text().encode()
