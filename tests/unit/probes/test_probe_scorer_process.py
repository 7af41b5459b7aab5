"""The scorer child process: answers jobs, survives its own crash, hang and exception by
failing that one job and starting afresh for the next."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from extproc.probes.scoring import Job, ScorerFailed, ScorerProcess

FAKE = "tests.support.fake_scorer:assess"


@pytest.fixture
def scorer() -> Iterator[ScorerProcess]:
    process = ScorerProcess(FAKE, timeout=5.0)
    try:
        yield process
    finally:
        process.close()


def test_scores_in_a_child_process_and_reports_cpu(scorer: ScorerProcess) -> None:
    scored = scorer.score(Job(b"RIFF\x96", "hello"))
    assert scored.figures["valid"] and scored.figures["mos"] == 3.0
    assert scored.cpu_seconds >= 0 and scorer.pid is not None
    assert scorer.score(Job(b"junk", "hello")).figures["invalid_reason"] == "not_wav"
    assert scorer.starts == 1


@pytest.mark.parametrize(("text", "reason"), [("crash", "crash"), ("raise", "error")])
def test_a_failing_scorer_fails_one_job_only(scorer: ScorerProcess, text: str, reason: str) -> None:
    with pytest.raises(ScorerFailed) as info:
        scorer.score(Job(b"RIFF\x96", text))
    assert info.value.reason == reason
    assert scorer.score(Job(b"RIFF\x64", "fine")).figures["mos"] == 2.0


def test_a_hung_scorer_is_killed_after_its_timeout() -> None:
    process = ScorerProcess(FAKE, timeout=1.0)
    try:
        process.score(Job(b"RIFF\x96", "warm up"))  # the spawn and import are not the timeout
        first = process.pid
        with pytest.raises(ScorerFailed) as info:
            process.score(Job(b"RIFF\x96", "hang"))
        assert info.value.reason == "timeout"
        assert process.score(Job(b"RIFF\x96", "again")).figures["valid"]
        assert process.pid != first and process.starts == 2
    finally:
        process.close()
