"""Test doubles of the live-sampling feed (tests/unit/live): a scorer held by a gate."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from extproc.live.feed import WARM_UP_TEXT
from extproc.live.metrics import LiveMetrics
from extproc.probes.scoring import Job, Scored, ScorerFailed

VALID = {"valid": True, "mos": 3.0, "silence_ratio": 0.1, "seconds_per_char": 0.06}


class GatedScorer:
    """Scores in the feed's thread; each job waits for ``gate`` (tests hold the queue full)."""

    def __init__(self, figures: dict[str, object] = VALID, cpu: float = 0.1) -> None:
        self.gate = threading.Event()
        self.jobs: list[Job] = []
        self.figures, self.cpu = figures, cpu
        self.fail: str | None = None

    def score(self, job: Job) -> Scored:
        if job.text == WARM_UP_TEXT:  # the feed's start, before any sample
            return Scored({}, 0.0)
        self.jobs.append(job)
        self.gate.wait(10)
        if self.fail:
            raise ScorerFailed(self.fail, "injected")
        return Scored(dict(self.figures), self.cpu)

    def score_many(self, jobs: Sequence[Job]) -> list[Scored | ScorerFailed]:
        """One job after the other, as the scoring child does with a batch."""
        out: list[Scored | ScorerFailed] = []
        for job in jobs:
            try:
                out.append(self.score(job))
            except ScorerFailed as failed:
                out.append(failed)
        return out

    def close(self) -> None:
        self.gate.set()


def value(metrics: LiveMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value("tts_quality_live_" + name, labels) or 0.0
