"""The live audio guards' source: the sidecars' live sampling figures, scraped from their
``/metrics`` without Prometheus (guards with ``source: live``; docs/audio-gate.md).

Once per check :meth:`LiveSource.refresh` scrapes every sidecar concurrently (in worker
threads: the controller's loop never blocks) and keeps, per sidecar, a bounded ring of
timestamped scrapes (monotonic time), as :class:`~extproc.rollout.guards.signals.
EnvoyStatsSource` does for Envoy. A guard reads, per sidecar, the difference between its
newest scrape and the newest one at least ``window`` older (the oldest held while the ring is
younger), and adds the differences of all sidecars (guards/live_figures.py). A sidecar whose
counts went down (restarted) starts its ring over.

Anything short of a full set of figures holds every live guard, with the reason in its detail:
a sidecar that cannot be scraped, a sidecar without live series (sampling off), fewer than
two scrapes. A scrape failure never passes and never fails a guard.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Sequence

from extproc.rollout.clock import Clock
from extproc.rollout.guards.judge import Reading
from extproc.rollout.guards.live_figures import (
    Series,
    add_up,
    difference,
    live_reading,
    parse_live,
    went_down,
)
from extproc.rollout.guards.signals import Fetch, http_get
from extproc.rollout.policy import Guard

log = logging.getLogger("extproc.rollout.guards.live")

DEFAULT_LIVE_METRICS = "http://127.0.0.1:9464/metrics"
MAX_SCRAPES = 10_000


def parse_urls(text: str) -> tuple[str, ...]:
    """A comma-separated list of sidecar metrics URLs (http or https); ValueError otherwise."""
    urls = tuple(u.strip() for u in text.split(",") if u.strip())
    if not urls:
        raise ValueError("no sidecar metrics URL")
    for url in urls:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"{url!r} is not an http(s) URL of a sidecar's /metrics")
    if len(set(urls)) != len(urls):
        raise ValueError("a sidecar metrics URL is listed twice (its samples would count twice)")
    return urls


class SidecarRing:
    """One sidecar's recent scrapes, oldest first, no older than ``horizon`` before the
    newest (one older kept as the baseline)."""

    def __init__(self, horizon: float) -> None:
        self.horizon = horizon
        self._ring: deque[tuple[float, Series]] = deque(maxlen=MAX_SCRAPES)

    def __len__(self) -> int:
        return len(self._ring)

    def add(self, at: float, series: Series) -> bool:
        """Append a scrape taken at monotonic time ``at``; False if the counts went down
        (then the ring holds only this scrape)."""
        restarted = bool(self._ring) and went_down(series, self._ring[-1][1])
        if restarted:
            self._ring.clear()
        self._ring.append((at, series))
        while len(self._ring) >= 2 and self._ring[1][0] <= at - self.horizon:
            self._ring.popleft()
        return not restarted

    def window(self, seconds: float) -> tuple[float, Series] | None:
        """The span covered and the difference over the last ``seconds`` (None: fewer than
        two scrapes, or counts that cannot be compared)."""
        if len(self._ring) < 2:
            return None
        now, newest = self._ring[-1]
        since, oldest = self._ring[0]
        for at, series in reversed(self._ring):
            if at <= now - seconds:
                since, oldest = at, series
                break
        delta = difference(newest, oldest)
        return None if delta is None else (now - since, delta)


class LiveSource:
    """Live audio figures of every listed sidecar, added up (see the module docstring)."""

    def __init__(
        self,
        urls: Sequence[str],
        clock: Clock,
        horizon: float,
        *,
        fetch: Fetch = http_get,
        timeout: float = 2.0,
    ) -> None:
        """``horizon``: the longest live guard window (seconds)."""
        self.urls = tuple(urls)
        self.clock = clock
        self.timeout = timeout
        self.problem: str | None = "not scraped yet"
        self._fetch = fetch
        self._rings = {url: SidecarRing(horizon) for url in self.urls}

    async def refresh(self) -> None:
        """Scrape every sidecar once; remember what is wrong, if anything."""
        results = await asyncio.gather(*(asyncio.to_thread(self._scrape, u) for u in self.urls))
        at = self.clock.monotonic()
        problems = []
        for url, result in zip(self.urls, results, strict=True):
            if isinstance(result, str):
                problems.append(result)
            elif not self._rings[url].add(at, result):
                log.warning("live figures of %s went down (restarted?): windows start over", url)
        problem = "; ".join(problems) or None
        if problem is not None and problem != self.problem:
            log.warning("live guards hold: %s", problem)
        self.problem = problem

    def _scrape(self, url: str) -> Series | str:
        """The sidecar's live series, or why not (never raises)."""
        try:
            body = self._fetch(url, self.timeout)
            series = parse_live(body.decode("utf-8", errors="replace"))
        except Exception as exc:  # any failure to read is a hold, never a crash
            return f"sidecar {url} unreachable: {str(exc) or type(exc).__name__}"
        if not series:
            return f"sidecar {url} has no live figures (is EXTPROC_SAMPLE_RATE above 0?)"
        return series

    def read(self, guard: Guard) -> Reading:
        """The guard's figure over its window, all sidecars added up; holds (no value) on
        any problem."""
        if self.problem is not None:
            return Reading(None, 0, self.problem)
        windows = [ring.window(guard.window) for ring in self._rings.values()]
        ready = [w for w in windows if w is not None]
        if len(ready) < len(windows):
            waiting = len(windows) - len(ready)
            return Reading(None, 0, f"waiting for two scrapes of {waiting} sidecar(s)")
        span = max(seconds for seconds, _ in ready)
        sidecars = f"{len(ready)} sidecar{'s' if len(ready) != 1 else ''}"
        return live_reading(guard, add_up(d for _, d in ready), f"from {sidecars} over {span:.1f}s")
