"""Bad answers through the real scorer process and the real scorers: a non-audio body, a body
over the size cap, a WAV header cut short, an empty body and a text with no words are each
counted as invalid audio with their reason; nothing crashes, and the next answer is scored."""

from __future__ import annotations

import asyncio
import io
import wave
from collections.abc import Iterator

import numpy as np
import pytest

from extproc.probes.budget import CpuBudget
from extproc.probes.corpus import Probe
from extproc.probes.metrics import ProbeMetrics
from extproc.probes.pairs import PairLog
from extproc.probes.runner import Answer, Options, ProbeRunner
from extproc.probes.scoring import ScorerProcess


def wav(seconds: float = 1.0, rate: int = 16_000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    samples = (0.3 * np.sin(2 * np.pi * 220 * t) * 32767).astype("<i2")
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    return out.getvalue()


@pytest.fixture(scope="module")
def scorer() -> Iterator[ScorerProcess]:
    process = ScorerProcess(timeout=60.0)
    try:
        yield process
    finally:
        process.close()


CASES = {
    "non-audio body": (b"<html>503 Service Unavailable</html>", "Hello there.", "not_wav"),
    "huge body": (wav(1.0) + b"\0" * 5000, "Hello there.", "too_large"),
    "truncated header": (wav(1.0)[:30], "Hello there.", "truncated"),
    "empty body": (b"", "Hello there.", "empty"),
    "text with no words": (wav(1.0), "  ...  !?  ", "no_text"),
}


def test_each_bad_answer_is_invalid_audio_with_its_reason(scorer: ScorerProcess) -> None:
    metrics, pairs = ProbeMetrics(), PairLog()
    corpus = [Probe(f"case-{i}", "short", text) for i, (_, text, _) in enumerate(CASES.values())]

    async def scenario() -> None:
        runner = ProbeRunner(
            corpus,
            lambda cohort, text: _never(),
            scorer,
            CpuBudget(100.0, 100.0, 0.0),
            metrics,
            pairs,
            Options(mos=False, asr=False, max_bytes=len(wav(1.0)) + 100),
            monotonic=lambda: 0.0,
        )
        for probe, (body, text, _) in zip(corpus, CASES.values(), strict=True):
            good = Answer(200, wav(1.0))
            await runner.score_round(
                Probe(probe.id, "short", text), {"v1": good, "v2": Answer(200, body)}
            )

    asyncio.run(scenario())
    results = list(reversed(pairs.recent(0.0, 1.0)))
    for pair, (name, (_, _, reason)) in zip(results, CASES.items(), strict=True):
        assert pair.v2 is not None and not pair.v2["valid"], name
        assert pair.v2["invalid_reason"] == reason, name
        if reason != "no_text":
            assert pair.v1 is not None and pair.v1["valid"], name  # the scorer lives on
        count = metrics.registry.get_sample_value(
            "tts_quality_invalid_audio_total", {"cohort": "v2", "reason": reason}
        )
        assert count == 1, name
    assert scorer.starts == 1  # never crashed


async def _never() -> Answer:
    raise AssertionError("not fetched in this test")
