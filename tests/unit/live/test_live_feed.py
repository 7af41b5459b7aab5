"""The feed between the sidecar and the scoring child: bounded, drop-when-full, under a CPU
budget, failures counted, nothing fatal; only numbers reach the metrics."""

from __future__ import annotations

import io
import threading
import wave
from collections.abc import Callable, Iterator, Sequence

import pytest

from extproc.live.feed import BATCH_SIZE, LiveFeed, request_text
from extproc.live.metrics import LiveMetrics
from extproc.probes.scoring import Job, Scored, ScorerFailed, ScorerProcess
from extproc.stack.processes import wait_until
from tests.support.live_feed import GatedScorer, value


def wait(condition: Callable[[], object], what: str, timeout: float = 10.0) -> None:
    wait_until(lambda: bool(condition()), what, timeout)


@pytest.fixture
def metrics() -> LiveMetrics:
    return LiveMetrics()


@pytest.fixture
def gated(metrics: LiveMetrics) -> Iterator[tuple[LiveFeed, GatedScorer]]:
    scorer = GatedScorer()
    feed = LiveFeed(metrics, queue_size=3, scorer=scorer, cpu_cores=4.0).start()
    yield feed, scorer
    feed.close()


def test_a_full_queue_drops_and_counts_never_blocks(
    gated: tuple[LiveFeed, GatedScorer], metrics: LiveMetrics
) -> None:
    feed, scorer = gated
    assert feed.offer("v2", b'{"text": "a"}', b"RIFF", True)
    wait(lambda: len(scorer.jobs) == 1, "the thread to hold the first job")
    offered = [feed.offer("v2", b"{}", b"RIFF", True) for _ in range(10)]
    assert offered == [True] * 3 + [False] * 7  # 3 queued behind the held one
    assert value(metrics, "dropped_total", reason="queue_full") == 7
    scorer.gate.set()
    wait(lambda: feed.scored == 4, "the held and the queued jobs to be scored")
    assert value(metrics, "scored_total", cohort="v2", outcome="valid") == 4
    assert value(metrics, "mos_count", cohort="v2") == 4


def test_the_text_and_the_capped_audio_reach_the_scorer(
    gated: tuple[LiveFeed, GatedScorer], metrics: LiveMetrics
) -> None:
    feed, scorer = gated
    scorer.gate.set()
    feed.offer("v1", b'{"text": "hello world", "voice": "x"}', b"RIFF" + bytes(10 << 20), False)
    wait(lambda: feed.scored == 1, "one sample")
    (job,) = scorer.jobs
    assert job.text == "hello world" and len(job.audio) == 4 << 20
    # a prefix (the answer was larger than Envoy's buffer): no seconds per character
    assert value(metrics, "seconds_per_char_count", cohort="v1") == 0
    assert value(metrics, "silence_ratio_count", cohort="v1") == 1


def test_over_the_cpu_budget_samples_are_dropped_and_counted(metrics: LiveMetrics) -> None:
    now = [0.0]
    scorer = GatedScorer(cpu=10.0)  # one sample costs 10 CPU seconds
    scorer.gate.set()
    feed = LiveFeed(metrics, cpu_cores=0.5, scorer=scorer, clock=lambda: now[0]).start()
    try:
        feed.offer("v2", b"{}", b"RIFF", True)
        wait(lambda: feed.scored == 1, "the first sample (within the burst)")
        feed.offer("v2", b"{}", b"RIFF", True)  # the budget is 6 s in debt now
        wait(lambda: value(metrics, "dropped_total", reason="over_budget") == 1, "a drop")
        now[0] += 13.0  # refilled at 0.5 core per second: out of debt
        feed.offer("v2", b"{}", b"RIFF", True)
        wait(lambda: feed.scored == 2, "scoring again once the budget refilled")
    finally:
        feed.close()
    assert value(metrics, "scorer_cpu_seconds_total") == 20.0


def test_scorer_failures_are_counted_and_the_feed_goes_on(
    gated: tuple[LiveFeed, GatedScorer], metrics: LiveMetrics
) -> None:
    feed, scorer = gated
    scorer.gate.set()
    scorer.fail = "crash"
    feed.offer("v2", b"{}", b"RIFF", True)
    wait(lambda: value(metrics, "scorer_failures_total", reason="crash") == 1, "a failure")
    scorer.fail = None
    feed.offer("v2", b"{}", b"RIFF", True)
    wait(lambda: feed.scored == 1, "the next sample")


@pytest.mark.parametrize(
    ("body", "text"),
    [
        (b'{"text": "hi"}', "hi"),
        (b"", ""),
        (b"\xff\xfe not json", ""),
        (b'{"text": 42}', ""),
        (b'["text"]', ""),
        (b'{"text": "cut sh', ""),  # a request body prefix
        (b"[" * 100_000, ""),  # nesting deep enough to blow the parser's recursion
    ],
)
def test_the_request_text_of_any_body(body: bytes, text: str) -> None:
    assert request_text(body) == text


def wav_of_silence(seconds: float = 0.5, rate: int = 16000) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(bytes(2 * int(seconds * rate)))
    return out.getvalue()


def test_bad_audio_through_the_real_scorers_is_counted_invalid(metrics: LiveMetrics) -> None:
    """The shipped scorer in its child process: hostile answers are invalid audio, not a crash
    (the scorers reject them before any model loads)."""
    scorer = ScorerProcess(timeout=60.0)
    feed = LiveFeed(metrics, scorer=scorer, cpu_cores=4.0).start()
    hostile = [b"<html>503</html>", b"RIFF\x10\x00\x00\x00WAV", b"", b"\x00" * (9 << 20)]
    try:
        for n, audio in enumerate(hostile, 1):
            feed.offer("v2", b'{"text": "hello"}', audio, True)
            wait(lambda: feed.scored == n, f"hostile answer {n}", 60)  # noqa: B023
        feed.offer("v1", b'{"text": "..."}', wav_of_silence(), True)  # a text with no words
        wait(lambda: feed.scored == 5, "the text without words", 60)
    finally:
        feed.close()
    assert value(metrics, "scored_total", cohort="v2", outcome="invalid") == 4
    assert value(metrics, "scored_total", cohort="v1", outcome="invalid") == 1  # no_text
    assert value(metrics, "scorer_failures_total", reason="crash") == 0
    assert scorer.starts == 1


class BatchRecorder(GatedScorer):
    """A scorer that records the size of each batch it is handed."""

    def __init__(self, cpu: float = 0.1) -> None:
        super().__init__(cpu=cpu)
        self.gate.set()
        self.batches: list[int] = []

    def score_many(self, jobs: Sequence[Job]) -> list[Scored | ScorerFailed]:
        self.batches.append(len(jobs))
        return super().score_many(jobs)


def test_samples_queued_while_the_thread_waits_go_to_the_scorer_as_one_batch(
    metrics: LiveMetrics,
) -> None:
    held = threading.Event()
    scorer = BatchRecorder()
    feed = LiveFeed(metrics, scorer=scorer, cpu_cores=4.0, pause=lambda _: held.wait(10)).start()
    try:
        wait(lambda: feed.warmed.is_set(), "the warm-up")
        for n in range(6):
            assert feed.offer("v2", b'{"text": "%d"}' % n, b"RIFF", True)
        held.set()  # the thread, woken by the first sample, now takes them in batches
        wait(lambda: feed.scored == 6, "the batches")
    finally:
        feed.close()
    assert scorer.batches == [BATCH_SIZE, 6 - BATCH_SIZE]  # a batch holds at most BATCH_SIZE
    assert [job.text for job in scorer.jobs] == ["0", "1", "2", "3", "4", "5"]
    assert value(metrics, "scored_total", cohort="v2", outcome="valid") == 6


def test_a_batch_arriving_in_debt_is_dropped_whole_and_counted(metrics: LiveMetrics) -> None:
    now, held = [0.0], threading.Event()
    held.set()
    scorer = BatchRecorder(cpu=10.0)  # one sample: 10 CPU seconds, the burst is 4
    feed = LiveFeed(
        metrics, scorer=scorer, cpu_cores=0.5, clock=lambda: now[0], pause=lambda _: held.wait(10)
    ).start()
    try:
        feed.offer("v2", b"{}", b"RIFF", True)
        wait(lambda: feed.scored == 1, "the first sample (within the burst)")
        held.clear()
        for _ in range(3):
            feed.offer("v2", b"{}", b"RIFF", True)
        held.set()
        wait(lambda: value(metrics, "dropped_total", reason="over_budget") == 3, "three drops")
    finally:
        feed.close()
    assert scorer.batches == [1] and feed.scored == 1
