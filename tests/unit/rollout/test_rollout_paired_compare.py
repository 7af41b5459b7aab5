"""Compare guards on audio figures: the policy, round numbers from /pairs, the per-stage
accumulation of paired differences (each round once, none from before the stage, a new
test after a probe restart), hold on no data, and the controller rolling back on a MOS drop
beyond the margin but not on a healthy v2."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from extproc.rollout.admin.table import _compare_row
from extproc.rollout.clock import FakeClock
from extproc.rollout.controller import Controller
from extproc.rollout.controller_command import build_sources
from extproc.rollout.guards.judge import family
from extproc.rollout.guards.paired_compare import PAIRED_HORIZON, PairedComparisons, difference
from extproc.rollout.guards.quality import Pair, QualitySource, parse_pairs
from extproc.rollout.policy import Guard, parse_policy
from extproc.rollout.state import Phase, Verdict
from extproc.rollout.stores.state_store import FileStateStore

POLICY = b"""
policy:
  rollout: r
  initial_share: 10%
  step_interval: 2h
  guards:
    - {name: mos-vs-v1, compare: {metric: mos, margin: 0.2, alpha: 1%}, min_samples: 10}
    - {name: wer-vs-v1, compare: {metric: asr_wer, margin: 0.1}}
    - {name: silence-vs-v1, compare: {metric: silence_ratio, margin: 5%, alpha: 0.1%}}
    - {name: clipping-vs-v1, compare: {metric: clipping_ratio, margin: 1%}}
"""


def guards() -> dict[str, Guard]:
    return {g.name: g for g in parse_policy("p.yaml", POLICY).guards}


def side(mos: float, **more: Any) -> dict[str, Any]:
    return {"valid": True, "mos": mos, "wer": 0.1, "silence_ratio": 0.1, "clipping_ratio": 0.0}


class FakeProbe:
    """The probe process's /pairs: numbered rounds, newest first, within the horizon."""

    def __init__(self) -> None:
        self.rounds: list[tuple[dict[str, Any] | None, dict[str, Any] | None]] = []
        self.quiet = False  # no round inside the horizon (a stalled scorer)

    def play(self, v1: dict[str, Any] | None, v2: dict[str, Any] | None) -> None:
        self.rounds.append((v1, v2))

    def fetch(self, url: str, timeout: float) -> bytes:
        assert f"horizon={PAIRED_HORIZON:g}" in url
        recent = [] if self.quiet else list(reversed(self.rounds))[:30]
        pairs = [
            {"age": 10.0 * i, "text": f"t{i % 10}", "v1": v1, "v2": v2}
            for i, (v1, v2) in enumerate(recent)
        ]
        return json.dumps({"pairs": pairs, "total": len(self.rounds)}).encode()


def test_the_policy_parses_audio_compare_guards_with_their_units() -> None:
    g = guards()
    mos = g["mos-vs-v1"].compare
    assert (
        mos is not None
        and mos.paired
        and (mos.metric, mos.margin, mos.alpha)
        == (
            "mos",
            0.2,
            0.01,
        )
    )
    assert g["mos-vs-v1"].min_samples == 10 and g["wer-vs-v1"].min_samples == 20
    silence = g["silence-vs-v1"].compare
    assert silence is not None and silence.margin == pytest.approx(0.05)
    assert silence.alpha == pytest.approx(0.001)
    assert {family(x) for x in g.values()} == {"quality"}


def test_sources_fetch_enough_rounds_for_compare_guards() -> None:
    policy = parse_policy("p.yaml", POLICY)
    clock = FakeClock(dt.datetime(2026, 12, 6, tzinfo=dt.UTC))
    source = build_sources(policy, clock, "", "", "http://127.0.0.1:9470")["quality"]
    assert isinstance(source, QualitySource)
    assert source.url.endswith(f"horizon={PAIRED_HORIZON:g}")


def test_rounds_are_numbered_from_total_newest_first() -> None:
    pairs = parse_pairs({"pairs": [{"age": 0, "v1": None, "v2": None}] * 3, "total": 7})
    assert [p.seq for p in pairs] == [7, 6, 5]
    assert [p.seq for p in parse_pairs({"pairs": [{"age": 0}]})] == [None]


def test_differences_are_oriented_worse_positive() -> None:
    pair = Pair(0.0, "t", side(3.5), {**side(3.0), "wer": 1.7, "silence_ratio": 0.4})
    assert difference("mos", pair) == pytest.approx(0.5)  # the drop
    assert difference("asr_wer", pair) == pytest.approx(0.9)  # WER capped at 1
    assert difference("silence_ratio", pair) == pytest.approx(0.3)
    assert difference("mos", Pair(0.0, "t", side(3.5), {"valid": False})) is None
    assert difference("mos", Pair(0.0, "t", None, side(3.0))) is None


def test_each_round_counts_once_and_none_from_before_the_stage() -> None:
    probe, compare = FakeProbe(), PairedComparisons()
    source = QualitySource("http://probe", PAIRED_HORIZON, fetch=probe.fetch)
    guard = guards()["mos-vs-v1"]
    for _ in range(5):
        probe.play(side(3.5), side(1.0))  # before the stage: terrible, never counted

    def check(at: float) -> Any:
        asyncio.run(source.refresh())
        return compare.judge(guard, source, "ramping/0/1000", at)

    first = check(0.0)
    assert first.verdict is Verdict.HOLD and "stage started" in first.detail
    for t in range(1, 13):
        probe.play(side(3.5), side(3.45))
        assert check(float(t)).samples == t
        assert check(t + 0.5).samples == t  # a check without a new round adds nothing
    figure = check(13.0)
    assert figure.verdict is Verdict.PASS and figure.value == pytest.approx(0.05)
    assert figure.samples_v2 == figure.samples_v1 == 12 and figure.window == 13.0
    # the probe process restarted: its round numbers went down, a new test begins
    probe.rounds = [(side(3.5), side(3.5))]
    assert check(14.0).verdict is Verdict.HOLD
    probe.play(side(3.5), side(3.5))
    assert check(15.0).samples == 1
    # a new stage starts over too
    assert compare.judge(guard, source, "ramping/1/2000", 16.0).verdict is Verdict.HOLD


def test_a_quiet_horizon_keeps_the_test_and_the_next_rounds_count() -> None:
    """No round inside the horizon for a while (scorer stalled): the round numbers have not
    gone down, so the stage's test goes on with what it had."""
    probe, compare = FakeProbe(), PairedComparisons()
    source = QualitySource("http://probe", PAIRED_HORIZON, fetch=probe.fetch)
    guard = guards()["mos-vs-v1"]

    def check(at: float) -> Any:
        asyncio.run(source.refresh())
        return compare.judge(guard, source, "s", at)

    check(0.0)
    for t in range(1, 11):
        probe.play(side(3.5), side(3.5))
        check(float(t))
    probe.quiet = True
    assert check(20.0).samples == 10
    probe.quiet = False
    probe.play(side(3.5), side(3.5))
    assert check(21.0).samples == 11


def test_no_probe_process_or_unnumbered_rounds_hold() -> None:
    guard, compare = guards()["mos-vs-v1"], PairedComparisons()

    def gone(url: str, timeout: float) -> bytes:
        raise ConnectionRefusedError("connection refused")

    dead = QualitySource("http://probe", 60.0, fetch=gone)
    asyncio.run(dead.refresh())
    assert "unreachable" in compare.judge(guard, dead, "s", 0.0).detail
    old = QualitySource("http://probe", 60.0, fetch=lambda u, t: b'{"pairs": [{"age": 1}]}')
    asyncio.run(old.refresh())
    figure = compare.judge(guard, old, "s", 0.0)
    assert figure.verdict is Verdict.HOLD and "number" in figure.detail
    assert compare.judge(guard, object(), "s", 0.0).verdict is Verdict.HOLD


def run_controller(tmp_path: Path, v2_mos: list[float]) -> Controller:
    policy = parse_policy("policy.yaml", POLICY)
    clock = FakeClock(dt.datetime.fromisoformat("2026-12-06T12:00:00+00:00"))
    probe = FakeProbe()
    sources = {"quality": QualitySource("http://probe", PAIRED_HORIZON, fetch=probe.fetch)}
    controller = Controller(policy, FileStateStore(tmp_path / "state.json"), sources, clock=clock)
    controller.apply("start", "alice")
    asyncio.run(controller.check())  # learns the stage; the next check anchors it
    for i, mos in enumerate(v2_mos):
        base = 3.2 + 0.1 * (i % 10)  # the texts score differently; the pairing removes it
        probe.play(side(base), side(base - (3.5 - mos)))
        clock.advance(10)
        asyncio.run(controller.check())
        state = controller.store.read()
        if state is not None and state.phase is Phase.ROLLED_BACK:
            break
    return controller


def test_a_mos_drop_beyond_the_margin_rolls_back_with_its_figures(tmp_path: Path) -> None:
    controller = run_controller(tmp_path, [3.5 - 0.6 + 0.05 * (i % 3) for i in range(60)])
    state = controller.store.read()
    assert state is not None and state.phase is Phase.ROLLED_BACK
    assert state.reason == "guard breach: mos-vs-v1"
    figure = controller.last.guards_json()["mos-vs-v1"] if controller.last else {}
    assert figure["verdict"] == "fail" and figure["metric"] == "mos"
    assert figure["value"] == pytest.approx(0.6, abs=0.05) and figure["effect_low"] > 0.2
    assert figure["p_value"] <= 0.01 and figure["samples_v2"] >= 10


def test_a_healthy_v2_is_not_rolled_back(tmp_path: Path) -> None:
    controller = run_controller(tmp_path, [3.5 + 0.05 * ((i % 5) - 2) for i in range(60)])
    state = controller.store.read()
    assert state is not None and state.phase is Phase.RAMPING
    figure = controller.last.guards_json()["mos-vs-v1"] if controller.last else {}
    # the first check learns the stage (the anchor is the next one's): 59 of 60 rounds
    assert figure["verdict"] == "pass" and figure["samples_v2"] == 59


def test_status_shows_mos_in_points_and_ratios_in_percentage_points() -> None:
    compare = {
        "metric": "mos",
        "alpha": 0.01,
        "effect_low": 0.3,
        "effect_high": 0.9,
        "p_value": 0.001,
        "e_value": 1000.0,
        "samples_v2": 40,
        "samples_v1": 40,
    }
    figure = {"name": "m", "value": 0.6, "threshold": 0.2, "min_samples": 10, "verdict": "fail"}
    row = _compare_row({**figure, "compare": compare})
    assert row[1:5] == ["mos drop", "+0.600", "[+0.300, +0.900] 99%", "+0.200"]
    assert row[7] == "40 pairs (min 10)"
    ratio = _compare_row({**figure, "compare": {**compare, "metric": "silence_ratio"}})
    assert ratio[2] == "+60.0pp"
