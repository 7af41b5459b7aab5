"""The recent paired results, bounded, and their wire form for the controller (``/pairs``).

Each round is one :class:`PairResult`: a probe text and the figures of v1's and v2's answers
(None for a side whose request failed). :class:`PairLog` keeps the newest ``capacity`` rounds
(thread-safe: the runner appends, the HTTP server reads) and renders those younger than a
horizon as ``{"pairs": [{"age", "text", "v1", "v2"}, ...]}``, newest first, ages in seconds
of this process's monotonic clock (extproc.rollout.guards.quality reads that shape).
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

DEFAULT_CAPACITY = 2048


@dataclass(frozen=True, slots=True)
class PairResult:
    at: float  # monotonic seconds when the round was scored
    text: str  # probe id
    v1: dict[str, Any] | None
    v2: dict[str, Any] | None


class PairLog:
    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self._pairs: deque[PairResult] = deque(maxlen=capacity)
        self._lock = threading.Lock()
        self.total = 0

    def add(self, pair: PairResult) -> None:
        with self._lock:
            self._pairs.append(pair)
            self.total += 1

    def recent(self, now: float, horizon: float) -> list[PairResult]:
        """Rounds at most ``horizon`` seconds old at ``now``, newest first."""
        with self._lock:
            pairs = list(self._pairs)
        return [p for p in reversed(pairs) if now - p.at <= horizon]

    def to_json(self, now: float, horizon: float) -> dict[str, Any]:
        return {
            "pairs": [
                {"age": round(max(now - p.at, 0.0), 3), "text": p.text, "v1": p.v1, "v2": p.v2}
                for p in self.recent(now, horizon)
            ],
            "total": self.total,
        }
