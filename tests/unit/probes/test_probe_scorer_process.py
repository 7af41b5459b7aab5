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


def test_a_batch_is_one_round_trip_with_a_result_per_job(scorer: ScorerProcess) -> None:
    jobs = [
        Job(b"RIFF\x96", "a"),
        Job(b"junk", "b"),
        Job(b"RIFF\x96", "raise"),
        Job(b"RIFF\x64", "c"),
    ]
    results = scorer.score_many(jobs)
    assert [type(r).__name__ for r in results] == ["Scored", "Scored", "ScorerFailed", "Scored"]
    first, invalid, failed, last = results
    assert not isinstance(first, ScorerFailed) and first.figures["mos"] == 3.0
    assert not isinstance(invalid, ScorerFailed) and invalid.figures["invalid_reason"] == "not_wav"
    assert isinstance(failed, ScorerFailed) and failed.reason == "error"  # its own job only
    assert not isinstance(last, ScorerFailed) and last.figures["mos"] == 2.0
    assert scorer.score_many([]) == [] and scorer.starts == 1


def test_a_crash_fails_the_whole_batch_and_the_next_starts_afresh(scorer: ScorerProcess) -> None:
    results = scorer.score_many([Job(b"RIFF\x96", "a"), Job(b"RIFF\x96", "crash")])
    assert [r.reason for r in results if isinstance(r, ScorerFailed)] == ["crash", "crash"]
    (again,) = scorer.score_many([Job(b"RIFF\x64", "fine")])
    assert not isinstance(again, ScorerFailed) and again.figures["mos"] == 2.0
    assert scorer.starts == 2
