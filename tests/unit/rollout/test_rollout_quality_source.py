"""Quality guards: parsing the probe process's pairs, readings per cohort and paired
difference, the MOS direction, the window, hold on too little or unreachable data."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from extproc.core.errors import RulesError
from extproc.rollout.clock import FakeClock
from extproc.rollout.controller import Controller
from extproc.rollout.guards.judge import Reading, family, judge
from extproc.rollout.guards.quality import Pair, QualitySource, parse_pairs, reading
from extproc.rollout.guards.signals import EnvoyStatsSource
from extproc.rollout.policy import Guard, parse_policy
from extproc.rollout.state import Phase, Verdict
from extproc.rollout.stores.state_store import FileStateStore
from tests.support.fake_envoy_stats import FakeEnvoyStats

POLICY = b"""
policy:
  rollout: r
  initial_share: 10%
  guards:
    - {name: mos-drop, signal: mos, cohort: v2-v1, threshold: 0.2, window: 2m, min_samples: 3}
    - {name: v2-mos, signal: mos, cohort: v2, threshold: 3.0, window: 2m}
    - {name: wer, signal: asr_wer, cohort: v2-v1, threshold: 0.15, window: 2m}
    - {name: silence, signal: silence_ratio, cohort: v2-v1, threshold: 30%, window: 2m}
    - {name: clipping, signal: clipping_ratio, cohort: v2, threshold: 1%, window: 2m}
    - {name: invalid, signal: invalid_audio_rate, cohort: v2, threshold: 5%, window: 2m}
    - {name: short, signal: truncation, cohort: v2-v1, threshold: 30%, window: 2m}
"""


POLICY_YAML = """policy:
  rollout: r
  initial_share: 10%
  step_interval: 2h
  guards:
    - {name: v2-p95, signal: latency_p95, cohort: v2, threshold: 800ms, window: 10s,
       min_samples: 50}
GUARDS"""
QUALITY_GUARDS = """    - {name: mos-drop, signal: mos, cohort: v2-v1, threshold: 0.5, window: 60s}
    - {name: silence, signal: silence_ratio, cohort: v2-v1, threshold: 30%, window: 60s}
"""


def guards() -> dict[str, Guard]:
    return {g.name: g for g in parse_policy("p.yaml", POLICY).guards}


def figures(**values: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "valid": True,
        "invalid_reason": None,
        "duration_s": 2.0,
        "silence_ratio": 0.1,
        "clipping_ratio": 0.0,
        "mos": 3.5,
        "wer": 0.4,
    }
    return base | values


def pair(age: float, v1: dict[str, Any] | None, v2: dict[str, Any] | None) -> Pair:
    return Pair(age, "t", v1, v2)


def test_the_policy_parses_quality_guards_with_their_units_and_family() -> None:
    g = guards()
    assert g["silence"].threshold == 0.3 and g["clipping"].threshold == 0.01
    assert g["mos-drop"].threshold == 0.2 and g["wer"].threshold == 0.15
    assert all(family(guard) == "quality" for guard in g.values())
    assert g["v2-mos"].lower_is_worse and not g["mos-drop"].lower_is_worse


def test_paired_mos_is_the_drop_v1_minus_v2_and_fails_above_the_threshold() -> None:
    pairs = [pair(10.0 * i, figures(mos=3.5), figures(mos=3.0)) for i in range(4)]
    r = reading(guards()["mos-drop"], pairs)
    assert r.value == pytest.approx(0.5) and r.samples == 4
    assert judge(guards()["mos-drop"], r).verdict is Verdict.FAIL
    better = [pair(10.0, figures(mos=3.0), figures(mos=3.4))] * 3
    assert (
        judge(guards()["mos-drop"], reading(guards()["mos-drop"], better)).verdict is Verdict.PASS
    )


def test_mos_of_one_cohort_fails_below_its_threshold() -> None:
    guard = guards()["v2-mos"]
    low = reading(guard, [pair(1.0, figures(), figures(mos=2.5))])
    high = reading(guard, [pair(1.0, figures(), figures(mos=3.5))])
    assert judge(guard, low).verdict is Verdict.FAIL
    assert judge(guard, high).verdict is Verdict.PASS


def test_ratios_are_paired_differences_v2_minus_v1() -> None:
    pairs = [pair(1.0, figures(silence_ratio=0.1, wer=0.5), figures(silence_ratio=0.9, wer=0.9))]
    assert reading(guards()["silence"], pairs).value == pytest.approx(0.8)
    assert reading(guards()["wer"], pairs).value == pytest.approx(0.4)


def test_truncation_is_how_much_shorter_v2_speaks_the_same_text() -> None:
    pairs = [pair(1.0, figures(duration_s=4.0), figures(duration_s=1.0))]
    assert reading(guards()["short"], pairs).value == pytest.approx(0.75)


def test_pairs_older_than_the_window_do_not_count() -> None:
    pairs = [pair(200.0, figures(mos=3.5), figures(mos=1.0)), pair(5.0, figures(), figures())]
    r = reading(guards()["mos-drop"], pairs)
    assert (r.value, r.samples) == (0.0, 1)
    assert judge(guards()["mos-drop"], r).verdict is Verdict.HOLD  # 1 < min_samples 3


def test_invalid_audio_is_a_rate_of_its_own_and_never_a_score() -> None:
    bad = {"valid": False, "invalid_reason": "empty", "mos": None, "duration_s": None}
    pairs = [pair(1.0, figures(), bad), pair(2.0, figures(), figures()), pair(3.0, figures(), None)]
    rate = reading(guards()["invalid"], pairs)
    assert (rate.value, rate.samples) == (0.5, 2)  # the failed request (None) is not audio
    mos = reading(guards()["mos-drop"], pairs)
    assert mos.samples == 1  # the invalid answer has no MOS to compare


def test_no_scored_pairs_hold() -> None:
    for guard in guards().values():
        figure = judge(guard, reading(guard, []))
        assert figure.verdict is Verdict.HOLD, guard.name


@pytest.mark.parametrize(
    "answer",
    [
        [],
        {"pairs": "x"},
        {"pairs": [{"age": -1, "v1": None, "v2": None}]},
        {"pairs": [{"age": True, "v1": None, "v2": None}]},
        {"pairs": [{"age": 1, "v1": [1], "v2": None}]},
        {"pairs": [3]},
    ],
)
def test_malformed_answers_are_refused(answer: Any) -> None:
    with pytest.raises(ValueError):
        parse_pairs(answer)


def test_the_source_reads_the_pairs_and_holds_when_the_probe_process_is_gone() -> None:
    answer = {"pairs": [{"age": 1.0, "text": "t", "v1": figures(), "v2": figures(mos=2.0)}] * 3}
    calls: list[str] = []

    def fetch(url: str, timeout: float) -> bytes:
        calls.append(url)
        if len(calls) > 1:
            raise OSError("connection refused")
        return json.dumps(answer).encode()

    source = QualitySource("http://probe:9470/", 120.0, fetch=fetch)
    asyncio.run(source.refresh())
    assert calls == ["http://probe:9470/pairs?horizon=120"]
    assert source.read(guards()["mos-drop"]).value == pytest.approx(1.5)
    asyncio.run(source.refresh())
    gone = source.read(guards()["mos-drop"])
    assert gone == Reading(None, 0, "probe process unreachable: connection refused")


def test_a_ratio_threshold_without_percent_is_refused() -> None:
    text = POLICY.replace(
        b"threshold: 30%, window: 2m}\n    - {name: clipping",
        b"threshold: 0.3, window: 2m}\n    - {name: clipping",
    )
    with pytest.raises(RulesError, match="write it as a percentage"):
        parse_policy("p.yaml", text)


def test_a_dead_probe_process_holds_the_ramp_but_not_a_latency_rollback(tmp_path: Path) -> None:
    """Scorer or probe process gone: the quality guards hold (never pass, never fail), the
    latency and error guards keep judging, and a latency breach still rolls v2 back."""
    text = POLICY_YAML.replace("GUARDS", QUALITY_GUARDS)
    policy = parse_policy("policy.yaml", text.encode())
    clock = FakeClock(dt.datetime.fromisoformat("2026-11-25T12:00:00+01:00"))
    envoy = FakeEnvoyStats()

    def gone(url: str, timeout: float) -> bytes:
        raise ConnectionRefusedError("connection refused")

    sources = {
        "envoy": EnvoyStatsSource("http://127.0.0.1:9901", clock, 10.0, fetch=envoy.fetch),
        "quality": QualitySource("http://127.0.0.1:9470", 60.0, fetch=gone),
    }
    controller = Controller(policy, FileStateStore(tmp_path / "state.json"), sources, clock=clock)
    controller.apply("start", "alice")
    for latency in [40.0] * 12 + [1500.0] * 12:
        envoy.serve("tts_v1", 20, latency_ms=40)
        envoy.serve("tts_v2", 20, latency_ms=latency)
        clock.advance(1)
        asyncio.run(controller.check())
        if latency == 40.0:
            assert controller.last is not None and controller.last.verdict is Verdict.HOLD
    state = controller.store.read()
    assert state is not None and state.phase is Phase.ROLLED_BACK
    assert state.reason == "guard breach: v2-p95"
    figures = controller.last.guards_json() if controller.last else {}
    assert figures["mos-drop"]["verdict"] == "hold"
    assert figures["mos-drop"]["detail"].startswith("probe process unreachable")
