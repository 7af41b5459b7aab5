"""Both models healthy (the stand-ins' two voices) over 30 simulated minutes of probing at the
default settings: the shipped policy's quality guards never fail, the rollout is never rolled
back; the false-alarm rate (checks with a failing quality guard / all checks) is printed.

Simulated, not waited for: the corpus is spoken once per voice exactly as the stand-ins serve
it (espeak-ng, Faults().audio_body) and scored once per (voice, text) by the real scorers in
the real scorer process (the stand-ins are deterministic, so a cached score is the score the
same probe would get again). The probe rounds then run through the real ProbeRunner, PairLog,
/pairs wire form, QualitySource and Controller on a fake clock: a round every 10 s (the
default interval), a controller check every second, 30 minutes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from extproc.probes.budget import CpuBudget
from extproc.probes.corpus import load_corpus
from extproc.probes.metrics import ProbeMetrics
from extproc.probes.pairs import PairLog
from extproc.probes.runner import Answer, Options, ProbeRunner
from extproc.probes.scoring import Job, Scored, ScorerProcess
from extproc.rollout.clock import FakeClock
from extproc.rollout.controller import Controller
from extproc.rollout.guards.judge import family
from extproc.rollout.guards.quality import QualitySource
from extproc.rollout.policy import load_policy
from extproc.rollout.state import Phase
from extproc.rollout.stores.state_store import FileStateStore
from extproc.standins.faults import Faults
from extproc.standins.speech import ESPEAK_RATE, VOICES, espeak_available, synthesize

pytestmark = pytest.mark.skipif(not espeak_available(), reason="espeak-ng missing")

ROOT = Path(__file__).resolve().parents[3]
MINUTES = 30
PROBE_INTERVAL = 10.0  # the default of `extproc probes`
CHECK_INTERVAL = 1.0  # the controller's default


class CachedScorer:
    """The real scorer process, asked once per distinct (audio, text)."""

    def __init__(self, scorer: ScorerProcess) -> None:
        self.scorer = scorer
        self.cache: dict[tuple[bytes, str], Scored] = {}

    def score(self, job: Job) -> Scored:
        key = (job.audio, job.text)
        if key not in self.cache:
            self.cache[key] = self.scorer.score(job)
        return self.cache[key]


@pytest.fixture(scope="module")
def scorer() -> Iterator[CachedScorer]:
    process = ScorerProcess(timeout=120.0)
    try:
        yield CachedScorer(process)
    finally:
        process.close()


def test_two_healthy_voices_never_roll_back_over_30_minutes(
    scorer: CachedScorer, tmp_path: Path
) -> None:
    corpus = load_corpus()
    spoken = {
        (cohort, probe.text): Faults().audio_body(
            synthesize(VOICES[cohort], probe.text), ESPEAK_RATE, np.random.default_rng(0)
        )
        for cohort in ("v1", "v2")
        for probe in corpus
    }
    shipped = load_policy(ROOT / "examples" / "policy.yaml")
    policy = dataclasses.replace(
        shipped, guards=tuple(g for g in shipped.guards if family(g) == "quality")
    )
    clock = FakeClock()
    pairs, metrics = PairLog(), ProbeMetrics()

    async def fetch(cohort: str, text: str) -> Answer:
        return Answer(200, spoken[(cohort, text)])

    runner = ProbeRunner(
        corpus,
        fetch,
        scorer,
        CpuBudget(1000.0, 1000.0, clock.monotonic()),  # the budget is tested elsewhere
        metrics,
        pairs,
        Options(interval=PROBE_INTERVAL),
        monotonic=clock.monotonic,
    )
    horizon = max(g.window for g in policy.guards)

    def pairs_over_http(url: str, timeout: float) -> bytes:
        return json.dumps(pairs.to_json(clock.monotonic(), horizon)).encode()

    source = QualitySource("http://probes", horizon, fetch=pairs_over_http)
    controller = Controller(
        policy, FileStateStore(tmp_path / "state.json"), {"quality": source}, clock=clock
    )
    controller.apply("start", "simulation")
    checks = fails = 0
    worst: dict[str, float] = {}

    async def simulate() -> None:
        nonlocal checks, fails
        for second in range(MINUTES * 60):
            if second % PROBE_INTERVAL == 0:
                probe = corpus[runner.next_index % len(corpus)]
                runner.next_index += 1
                answers = {c: await fetch(c, probe.text) for c in ("v1", "v2")}
                await runner.score_round(probe, answers)
            await controller.check()
            checks += 1
            assert controller.last is not None
            fails += controller.last.verdict.value == "fail"
            for figure in controller.last.figures:
                if figure.value is not None:
                    margin = figure.value - figure.threshold
                    if figure.guard == "v2-mos":
                        margin = figure.threshold - figure.value
                    worst[figure.guard] = max(worst.get(figure.guard, -99.0), margin)
            clock.advance(CHECK_INTERVAL)

    asyncio.run(simulate())
    state = controller.store.read()
    assert state is not None
    print(
        f"\nhealthy v1/v2 voices, {MINUTES} simulated minutes, {pairs.total} probe rounds, "
        f"{checks} checks: {fails} failing checks (false-alarm rate {fails / checks:.4f}), "
        f"phase {state.phase.value}; closest approach to each threshold (value - threshold, "
        f"<0 = passing): " + ", ".join(f"{k} {v:+.3f}" for k, v in worst.items())
    )
    assert pairs.total == MINUTES * 60 / PROBE_INTERVAL
    assert fails == 0 and state.phase is Phase.RAMPING
    assert all(f.verdict.value == "pass" for f in controller.last.figures if controller.last), (
        controller.last
    )
