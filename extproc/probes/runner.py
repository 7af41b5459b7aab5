"""The probe loop: every ``interval`` the next corpus text goes to v1 and to v2, both answers
are scored out of process, and the pair is logged for the controller.

Two tasks joined by a bounded queue:

- the *prober* wakes every ``interval`` (monotonic), skips the round if the CPU budget is in
  debt (``dropped{reason=over_budget}``), else fetches v1 and v2 concurrently (same text) and
  queues the two answers; if the queue is full the round is dropped (``queue_full``): the
  probe rate never outruns the scorer, and memory stays bounded (answers wait only there);
- the *scorer* task takes a round, scores v1 then v2 in the scorer process (a worker thread
  waits on it, the loop stays free), debits the CPU it reports, and logs the pair. A side
  whose request failed (no HTTP 200) or whose scoring crashed is logged as None: the
  controller sees no figures for it and its guards fall back to hold.

Answers are never written anywhere; only figures leave this module.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from extproc.probes.budget import CpuBudget
from extproc.probes.corpus import Probe
from extproc.probes.metrics import ProbeMetrics
from extproc.probes.pairs import PairLog, PairResult
from extproc.probes.scoring import Job, Scored, ScorerFailed

log = logging.getLogger("extproc.probes")
COHORTS = ("v1", "v2")


@dataclass(frozen=True, slots=True)
class Answer:
    """A probe request's outcome: the HTTP status (0: no answer) and body (capped)."""

    status: int
    body: bytes = b""


class Scorer(Protocol):
    def score(self, job: Job) -> Scored: ...


Fetch = Callable[[str, str], Awaitable[Answer]]  # (cohort, text) -> answer


@dataclass(frozen=True, slots=True)
class Options:
    interval: float = 10.0
    queue_size: int = 2
    mos: bool = True
    asr: bool = True
    max_bytes: int = 8 << 20


class ProbeRunner:
    def __init__(
        self,
        corpus: Sequence[Probe],
        fetch: Fetch,
        scorer: Scorer,
        budget: CpuBudget,
        metrics: ProbeMetrics,
        pairs: PairLog,
        options: Options = Options(),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if not corpus:
            raise ValueError("the probe corpus is empty")
        self.corpus = tuple(corpus)
        self.vocabulary = tuple(p.text for p in self.corpus)
        self.fetch = fetch
        self.scorer = scorer
        self.budget = budget
        self.metrics = metrics
        self.pairs = pairs
        self.options = options
        self.monotonic = monotonic
        self.next_index = 0
        self.dropped = 0
        self._queue: asyncio.Queue[tuple[Probe, dict[str, Answer]]] = asyncio.Queue(
            options.queue_size
        )

    async def run(self, rounds: int | None = None) -> None:
        """Probe until cancelled (or ``rounds`` rounds were started or dropped, for tests)."""
        worker = asyncio.create_task(self._score_forever())
        try:
            started = 0
            while rounds is None or started < rounds:
                began = self.monotonic()
                await self.probe_once()
                started += 1
                await asyncio.sleep(max(0.0, self.options.interval - (self.monotonic() - began)))
            await self._queue.join()
        finally:
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)

    async def probe_once(self) -> bool:
        """One round: fetch the next text from both cohorts and queue it; False if dropped."""
        probe = self.corpus[self.next_index % len(self.corpus)]
        self.next_index += 1
        if not self.budget.allows(self.monotonic()):
            self._drop("over_budget")
            return False
        if self._queue.full():
            self._drop("queue_full")
            return False
        answers = await asyncio.gather(*(self.fetch(c, probe.text) for c in COHORTS))
        try:
            self._queue.put_nowait((probe, dict(zip(COHORTS, answers, strict=True))))
        except asyncio.QueueFull:
            self._drop("queue_full")
            return False
        return True

    def _drop(self, reason: str) -> None:
        self.dropped += 1
        self.metrics.record_dropped(reason)

    async def _score_forever(self) -> None:
        while True:
            probe, answers = await self._queue.get()
            try:
                await self.score_round(probe, answers)
            except Exception:  # never let one round end the loop
                log.exception("scoring round %s failed", probe.id)
            finally:
                self._queue.task_done()

    async def score_round(self, probe: Probe, answers: dict[str, Answer]) -> PairResult:
        figures: dict[str, dict[str, Any] | None] = {}
        for cohort in COHORTS:
            figures[cohort] = await self._score(cohort, probe, answers[cohort])
        pair = PairResult(self.monotonic(), probe.id, figures["v1"], figures["v2"])
        self.pairs.add(pair)
        self.metrics.record_round(pair.v1, pair.v2)
        return pair

    async def _score(self, cohort: str, probe: Probe, answer: Answer) -> dict[str, Any] | None:
        if answer.status != 200:
            self.metrics.record_failure(cohort, "http_error")
            return None
        opts = self.options
        job = Job(answer.body, probe.text, opts.mos, opts.asr, opts.max_bytes, self.vocabulary)
        began = time.monotonic()
        try:
            scored = await asyncio.to_thread(self.scorer.score, job)
        except ScorerFailed as exc:
            log.warning("scorer failed on %s/%s: %s", cohort, probe.id, exc)
            self.metrics.record_scorer_failure(exc.reason)
            self.metrics.record_failure(cohort, "scorer_failed")
            return None
        self.budget.spend(scored.cpu_seconds, self.monotonic())
        self.metrics.record_scoring(time.monotonic() - began, scored.cpu_seconds)
        self.metrics.record_answer(cohort, scored.figures)
        return scored.figures
