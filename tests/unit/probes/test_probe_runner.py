"""The probe loop with a fake fetch and a fake scorer: paired rounds, the CPU budget and the
bounded queue drop work (counted), failed requests and scorer failures become None sides,
bad audio is counted as invalid; the budget, the corpus and the /pairs server on their own."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from extproc.core.errors import RulesError
from extproc.probes.budget import CpuBudget
from extproc.probes.corpus import DEFAULT_CORPUS, KINDS, load_corpus, parse_corpus
from extproc.probes.metrics import ProbeMetrics
from extproc.probes.pairs import PairLog, PairResult
from extproc.probes.runner import Answer, Options, ProbeRunner
from extproc.probes.scoring import Job, Scored, ScorerFailed
from extproc.probes.server import ProbeHttpServer
from tests.support.fake_scorer import assess

CORPUS = parse_corpus(
    "c.yaml", b"probes:\n  - {id: a, kind: short, text: hi}\n  - {id: b, kind: long, text: there}\n"
)


class FakeScorer:
    def __init__(self, cpu: float = 0.1, fail_on: str = "") -> None:
        self.cpu, self.fail_on, self.jobs = cpu, fail_on, 0

    def score(self, job: Job) -> Scored:
        self.jobs += 1
        if job.audio == self.fail_on.encode():
            raise ScorerFailed("crash", "boom")
        return Scored(assess(job.audio, job.text).as_dict(), self.cpu)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def sample(metrics: ProbeMetrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def make_runner(
    answers: dict[str, bytes | int], scorer: FakeScorer, cores: float = 10.0, **kw: Any
):
    clock = Clock()

    async def fetch(cohort: str, text: str) -> Answer:
        a = answers[cohort]
        return Answer(a) if isinstance(a, int) else Answer(200, a)

    metrics, pairs = ProbeMetrics(), PairLog()
    budget = CpuBudget(cores, burst=1.0, now=0.0)
    runner = ProbeRunner(
        CORPUS, fetch, scorer, budget, metrics, pairs, Options(interval=0.001, **kw), clock
    )
    return runner, metrics, pairs, clock


def test_rounds_pair_the_same_text_and_record_figures_per_cohort() -> None:
    runner, metrics, pairs, clock = make_runner(
        {"v1": b"RIFF\xaf", "v2": b"RIFF\x96"}, FakeScorer()
    )
    asyncio.run(runner.run(rounds=4))
    recent = pairs.recent(clock.now, 10)
    assert [p.text for p in recent] == ["b", "a", "b", "a"]
    assert (recent[0].v1 or {})["mos"] == 3.5 and (recent[0].v2 or {})["mos"] == 3.0
    assert sample(metrics, "tts_quality_mos_count", cohort="v2") == 4
    assert sample(metrics, "tts_quality_pair_difference_count", signal="mos") == 4
    assert sample(metrics, "tts_quality_pair_difference_recent", signal="mos") == pytest.approx(0.5)
    assert sample(metrics, "tts_quality_rounds_total") == 4


def test_invalid_audio_failed_requests_and_scorer_crashes_are_counted_not_fatal() -> None:
    scorer = FakeScorer(fail_on="CRASH")
    runner, metrics, pairs, _clock = make_runner({"v1": 503, "v2": b"not audio"}, scorer)
    asyncio.run(runner.run(rounds=2))
    assert all(p.v1 is None and p.v2 is not None and not p.v2["valid"] for p in pairs.recent(0, 1))
    assert sample(metrics, "tts_quality_probes_total", cohort="v1", outcome="http_error") == 2
    assert sample(metrics, "tts_quality_invalid_audio_total", cohort="v2", reason="not_wav") == 2
    runner2, metrics2, pairs2, _ = make_runner({"v1": b"RIFF\xaf", "v2": b"CRASH"}, scorer)
    asyncio.run(runner2.run(rounds=1))
    assert pairs2.recent(0, 1)[0].v2 is None
    assert sample(metrics2, "tts_quality_scorer_failures_total", reason="crash") == 1


def test_an_exhausted_cpu_budget_drops_rounds_and_counts_them() -> None:
    scorer = FakeScorer(cpu=5.0)
    answers = {"v1": b"RIFF\xaf", "v2": b"RIFF\xaf"}
    runner, metrics, pairs, clock = make_runner(answers, scorer, cores=0.1)
    runner.budget.spend(5.0, clock.now)  # in debt by 4 CPU seconds; the clock stands still
    asyncio.run(runner.run(rounds=3))
    assert pairs.total == 0 and runner.dropped == 3 and scorer.jobs == 0
    assert sample(metrics, "tts_quality_dropped_rounds_total", reason="over_budget") == 3
    clock.now = 100.0  # 10 CPU seconds refilled at 0.1 cores, capped at the burst (1 s)
    assert runner.budget.allows(clock.now) and runner.budget.balance(clock.now) == 1.0


def test_a_full_queue_drops_the_round_instead_of_waiting() -> None:
    async def scenario() -> tuple[bool, int]:
        runner, metrics, _pairs, _ = make_runner(
            {"v1": b"RIFF\xaf", "v2": b"RIFF\xaf"}, FakeScorer(), queue_size=1
        )
        first = await runner.probe_once()  # nobody scores: the queue holds it
        second = await runner.probe_once()
        return first and not second, int(
            sample(metrics, "tts_quality_dropped_rounds_total", reason="queue_full")
        )

    assert asyncio.run(scenario()) == (True, 1)


def test_the_budget_refills_at_its_rate_up_to_the_burst() -> None:
    budget = CpuBudget(0.5, burst=2.0, now=0.0)
    budget.spend(3.0, 0.0)
    assert budget.balance(0.0) == -1.0 and not budget.allows(1.0)
    assert budget.allows(2.5) and budget.balance(100.0) == 2.0
    with pytest.raises(ValueError):
        CpuBudget(0, 1, 0)


def test_the_shipped_corpus_has_every_kind() -> None:
    corpus = load_corpus(DEFAULT_CORPUS)
    assert {p.kind for p in corpus} == set(KINDS) and len(corpus) >= 8


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"probes: []\n", "c.yaml:1: probes: must not be an empty list"),
        (
            b"probes:\n  - {id: a, kind: poem, text: x}\n",
            "c.yaml:2: probes[0].kind: 'poem' is not a kind; allowed: short, long, numbers, mixed",
        ),
        (
            b"probes:\n  - {id: a, kind: short, text: x}\n  - {id: a, kind: short, text: y}\n",
            "c.yaml:3: probes[1].id: duplicate probe id 'a'",
        ),
    ],
)
def test_a_bad_corpus_names_file_line_and_field(text: bytes, message: str) -> None:
    with pytest.raises(RulesError) as info:
        parse_corpus("c.yaml", text)
    assert str(info.value) == message


def test_the_server_serves_recent_pairs_with_ages_and_metrics(tmp_path: Path) -> None:
    pairs, metrics = PairLog(), ProbeMetrics()
    pairs.add(PairResult(10.0, "a", {"valid": True, "mos": 3.0}, None))
    pairs.add(PairResult(95.0, "b", None, None))
    server = ProbeHttpServer("127.0.0.1", 0, pairs, metrics, monotonic=lambda: 100.0)
    server.start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        with urllib.request.urlopen(base + "/pairs?horizon=60", timeout=5) as r:
            answer = json.loads(r.read())
        assert answer["pairs"] == [{"age": 5.0, "text": "b", "v1": None, "v2": None}]
        with urllib.request.urlopen(base + "/pairs", timeout=5) as r:
            assert len(json.loads(r.read())["pairs"]) == 2
        with urllib.request.urlopen(base + "/metrics", timeout=5) as r:
            assert b"tts_quality_rounds_total" in r.read()
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(base + "/pairs?horizon=-1", timeout=5)
    finally:
        server.close()
