"""The bounded hand-off from the sidecar's event loop to the scoring child.

Before a drawn request is asked for its bodies, :meth:`LiveFeed.admit` (on the event loop, at
decision time) checks that the scoring side can take it: the queue is not full, the CPU budget
is not in debt (as the thread last saw it) and the cohort's rate cap
(:class:`extproc.live.admission.RateCap`) has a token; otherwise the request is skipped
(counted) and Envoy is asked for nothing. :meth:`LiveFeed.offer` is called on the event loop
for each sampled answer: it puts the capped copy on a bounded queue and returns at once; a
full queue drops the sample (counted).
A daemon thread takes samples off the queue in batches (the first one wakes it; it then waits
``batch_window`` seconds so that more can arrive, and takes up to ``BATCH_SIZE``), drops those the
CPU budget cannot pay for (counted), and has the batch scored in one round trip by the probe
process's scoring child
(:class:`extproc.probes.scoring.ScorerProcess`: a niced process of its own, restarted after a
crash or a timeout; the scorers are imported there, never in the sidecar): one wake-up of the
thread and of the child per batch instead of per sample. The thread waits
on the child's pipe, so scoring costs the sidecar's event loop nothing but the copy. What
comes back is numbers; they go into the per-cohort metrics and nowhere else. The request
text and the audio exist only in the queue, the pipe and the child's memory: never logged,
never written.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import struct
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from extproc.live.admission import RateCap, default_cap
from extproc.live.metrics import COHORTS, LiveMetrics
from extproc.probes.budget import CpuBudget
from extproc.probes.scoring import DEFAULT_SCORER, Job, Scored, ScorerFailed, ScorerProcess

log = logging.getLogger("extproc.live")

QUEUE_SIZE = 8
#: Seconds the thread waits after a first sample for more to join its batch, and the most
#: samples in one batch (so at most QUEUE_SIZE + BATCH_SIZE samples are held at once).
BATCH_WINDOW = 0.05
BATCH_SIZE = 4
WARM_UP_TEXT = "warm up the scorers"
SCORER_TIMEOUT = 60.0  # seconds for one sample; longer: the child is killed (counted)
#: Caps of the copies taken from a sampled request (Envoy hands over at most its buffer).
TEXT_CAP = 64 << 10
AUDIO_CAP = 4 << 20


@dataclass(frozen=True, slots=True)
class Sample:
    cohort: str
    request_body: bytes  # the request's JSON (capped), parsed in the thread
    audio: bytes  # the answer (capped)
    whole: bool  # False: a prefix (the answer was larger than Envoy's buffer)


class Scorer(Protocol):
    def score(self, job: Job) -> Scored: ...
    def score_many(self, jobs: Sequence[Job]) -> list[Scored | ScorerFailed]: ...
    def close(self) -> None: ...


def request_text(body: bytes) -> str:
    """The ``text`` of a TTS request body (``{"text": ...}``); '' for anything else."""
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return ""
    text = value.get("text") if isinstance(value, dict) else None
    return text if isinstance(text, str) else ""


def _silence_wav(seconds: float = 0.5, rate: int = 16000) -> bytes:
    header = struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF", 36 + 2 * int(seconds * rate), b"WAVE", b"fmt ", 16, 1, 1, rate, 2 * rate, 2, 16,
        b"data", 2 * int(seconds * rate),
    )  # fmt: skip
    return header + bytes(2 * int(seconds * rate))


class LiveFeed:
    def __init__(
        self,
        metrics: LiveMetrics,
        *,
        cpu_cores: float = 0.25,
        queue_size: int = QUEUE_SIZE,
        scorer: Scorer | None = None,
        scorer_name: str = DEFAULT_SCORER,
        max_per_second: float | None = None,
        batch_window: float = BATCH_WINDOW,
        clock: Callable[[], float] = time.monotonic,
        pause: Callable[[float], None] = time.sleep,
    ) -> None:
        """``max_per_second``: the rate cap per cohort (None: ``default_cap(cpu_cores)``)."""
        self.metrics = metrics
        self._queue: queue.Queue[Sample | None] = queue.Queue(maxsize=queue_size)
        self._scorer: Scorer = (
            scorer if scorer is not None else ScorerProcess(scorer_name, timeout=SCORER_TIMEOUT)
        )
        self._clock = clock
        self._batch_window = batch_window
        self._pause = pause  # how the thread waits for a batch to fill (tests hold it)
        self._mean_cpu = 0.0  # CPU seconds per scored sample, moving average (batch sizing)
        self._budget = CpuBudget(cpu_cores, 8 * cpu_cores, clock())  # burst: 8 s of budget
        #: Until when the budget is in debt, as the thread last computed it (read by admit).
        self._debt_until = 0.0
        cap = default_cap(cpu_cores) if max_per_second is None else max_per_second
        self.max_per_second = cap
        self._caps = {cohort: RateCap(cap, clock()) for cohort in COHORTS}
        self._thread = threading.Thread(target=self._run, name="live-scoring", daemon=True)
        self.scored = 0  # samples scored (tests wait on it)
        self.warmed = threading.Event()

    def start(self) -> LiveFeed:
        self._thread.start()
        return self

    def admit(self, cohort: str) -> bool:
        """May a request of ``cohort`` drawn for sampling be asked for its bodies? False
        (counted as skipped, by reason) if the queue is full, the budget in debt or the
        cohort's cap out of tokens. Never blocks."""
        now = self._clock()
        if self._queue.full():
            reason = "queue_full"
        elif now < self._debt_until:
            reason = "over_budget"
        else:
            cap = self._caps.get(cohort)
            if cap is None or cap.take(now):
                return True
            reason = "rate_cap"
        self.metrics.record_skipped(cohort, reason)
        return False

    def offer(self, cohort: str, request_body: bytes, audio: bytes, whole: bool) -> bool:
        """Queue a sample for scoring; False (counted) if the queue is full. Never blocks."""
        try:
            self._queue.put_nowait(
                Sample(cohort, request_body[:TEXT_CAP], audio[:AUDIO_CAP], whole)
            )
        except queue.Full:
            self.metrics.record_dropped("queue_full")
            return False
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread (samples still queued are dropped) and the scoring child."""
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        with contextlib.suppress(queue.Full):  # emptied just above; the thread is a daemon
            self._queue.put_nowait(None)
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._scorer.close()

    def _run(self) -> None:
        self._warm_up()
        while (first := self._queue.get()) is not None:
            if self._batch_window > 0:
                self._pause(self._batch_window)  # puts meanwhile wake nobody
            batch, stop = [first], False
            while len(batch) < BATCH_SIZE:
                try:
                    sample = self._queue.get_nowait()
                except queue.Empty:
                    break
                if sample is None:
                    stop = True
                    break
                batch.append(sample)
            try:
                self._score(batch)
            except Exception:  # never let the thread die: log (no body), go on
                log.exception("live scoring failed on a batch of %d samples", len(batch))
                self.metrics.record_failure("error")
            if stop:
                return

    def _warm_up(self) -> None:
        """Start the child and load its models now (half a second of silence, a few words),
        so that the imports and the model loading do not land on the first sample. Counted
        nowhere; a failure here only means the first sample starts the child."""
        try:
            self._scorer.score(Job(_silence_wav(), WARM_UP_TEXT))
        except Exception as exc:  # the next sample starts a fresh child
            log.warning("live scorer warm-up failed: %s", exc)
        self.warmed.set()
        self.metrics.ready.set(1)

    def _score(self, batch: list[Sample]) -> None:
        """Score what the budget can pay for: while the balance covers the samples taken so
        far at the mean CPU per sample seen, the rest of the batch is dropped (counted)."""
        balance = self._budget.balance(self._clock())
        taken: list[Sample] = []
        for sample in batch:
            if balance - self._mean_cpu * len(taken) > 0:
                taken.append(sample)
            else:
                self.metrics.record_dropped("over_budget")
        if not taken:
            self._publish_debt()
            return
        jobs = [
            Job(sample.audio, request_text(sample.request_body), max_bytes=AUDIO_CAP)
            for sample in taken
        ]
        for sample, result in zip(taken, self._scorer.score_many(jobs), strict=True):
            if isinstance(result, ScorerFailed):
                log.warning("live scorer failed (%s)", result.reason)
                self.metrics.record_failure(result.reason)
                continue
            self._budget.spend(result.cpu_seconds, self._clock())
            self._mean_cpu += (result.cpu_seconds - self._mean_cpu) / 8
            self.metrics.record_scored(
                sample.cohort, result.figures, result.cpu_seconds, sample.whole
            )
            self.scored += 1
        self._publish_debt()

    def _publish_debt(self) -> None:
        """Tell :meth:`admit` until when the budget stays in debt (one float: the event loop
        reads it without a lock)."""
        now = self._clock()
        balance = self._budget.balance(now)
        self._debt_until = now - balance / self._budget.cores if balance <= 0 else 0.0
