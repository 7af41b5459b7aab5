"""``extproc rollout controller``: settings are checked before anything runs, each refusal
names what is wrong."""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

import pytest

from extproc.rollout import controller_command as command
from extproc.rollout.clock import ScaledClock, SystemClock
from extproc.rollout.guards.quality import QualitySource
from extproc.rollout.guards.signals import EnvoyStatsSource, PrometheusSource
from extproc.rollout.state import RolloutState
from extproc.rollout.stores.state_store import FileStateStore

ROOT = Path(__file__).resolve().parents[3]
RULES = ROOT / "examples" / "rules.yaml"
POLICY = """policy:
  rollout: gpt-sovits-v2
  initial_share: 10%
  guards:
    - {name: v2-p95, signal: latency_p95, threshold: 800ms, window: 30s, min_samples: 50}
    - {name: v2-errors, signal: error_rate, threshold: 0.5%, window: 60s, min_samples: 50}
"""
PROMQL_GUARD = """    - {name: mos, signal: promql, query: 'avg(mos)', threshold: 0.2, window: 5m}
"""


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="extproc rollout")
    command.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["controller", *argv])


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    return policy, tmp_path / "state.json"


def test_a_controller_from_flags(files: tuple[Path, Path]) -> None:
    policy, state = files
    args = parse("--policy", str(policy), "--state", str(state), "--rules", str(RULES))
    controller = command.build_controller(args)
    assert controller.policy.rollout == "gpt-sovits-v2" and controller.interval == 1.0
    assert isinstance(controller.clock, SystemClock)
    source = controller.sources["envoy"]
    assert isinstance(source, EnvoyStatsSource)
    assert source.horizon == 60.0 and source.url.startswith("http://127.0.0.1:9901/stats/")


def test_a_scaled_clock_and_prometheus(files: tuple[Path, Path]) -> None:
    policy, state = files
    policy.write_text(POLICY + PROMQL_GUARD)
    args = parse(
        *("--policy", str(policy), "--state", str(state), "--prometheus", "http://127.0.0.1:9"),
        *("--clock-start", "2026-11-25T07:00:00+01:00", "--clock-speed", "720"),
        *("--interval", "0.25"),
    )
    controller = command.build_controller(args)
    assert isinstance(controller.clock, ScaledClock) and controller.clock.speed == 720
    assert isinstance(controller.sources["promql"], PrometheusSource)
    assert controller.interval == 0.25


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (["--policy", ""], "--policy (EXTPROC_ROLLOUT_POLICY) and --state (EXTPROC_STATE) are"),
        (["--interval", "0"], "--interval: '0' must be greater than 0"),
        (["--clock-speed", "fast"], "--clock-speed: 'fast' is not a number"),
        (["--clock-start", "soon"], "'soon' is not an ISO 8601 time"),
    ],
)
def test_bad_settings_are_refused(
    files: tuple[Path, Path], change: list[str], message: str
) -> None:
    policy, state = files
    args = parse("--policy", str(policy), "--state", str(state), *change)
    with pytest.raises(ValueError) as info:
        command.build_controller(args)
    assert message in str(info.value)


def test_promql_guards_need_a_prometheus(files: tuple[Path, Path]) -> None:
    policy, state = files
    policy.write_text(POLICY + PROMQL_GUARD)
    with pytest.raises(ValueError, match="promql guards: --prometheus"):
        command.build_controller(parse("--policy", str(policy), "--state", str(state)))


QUALITY_GUARD = """    - {name: mos-drop, signal: mos, cohort: v2-v1, threshold: 0.5, window: 2m}
    - {name: silence, signal: silence_ratio, cohort: v2-v1, threshold: 30%, window: 90s}
"""


def test_quality_guards_read_the_probe_process(files: tuple[Path, Path]) -> None:
    policy, state = files
    policy.write_text(POLICY + QUALITY_GUARD)
    default = command.build_controller(parse("--policy", str(policy), "--state", str(state)))
    source = default.sources["quality"]
    assert isinstance(source, QualitySource)
    assert source.url == "http://127.0.0.1:9470/pairs?horizon=120"
    args = parse("--policy", str(policy), "--state", str(state), "--quality", "http://p:1/")
    chosen = command.build_controller(args).sources["quality"]
    assert isinstance(chosen, QualitySource) and chosen.url == "http://p:1/pairs?horizon=120"
    with pytest.raises(ValueError, match="quality guards: --quality"):
        command.build_controller(
            parse("--policy", str(policy), "--state", str(state), "--quality", "")
        )


def test_the_policy_must_be_for_the_rules_rollout(files: tuple[Path, Path]) -> None:
    policy, state = files
    policy.write_text(POLICY.replace("rollout: gpt-sovits-v2", "rollout: other"))
    args = parse("--policy", str(policy), "--state", str(state), "--rules", str(RULES))
    with pytest.raises(
        ValueError, match=r"policy\.rollout 'other' is not the rollout 'gpt-sovits-v2'"
    ):
        command.build_controller(args)


def test_a_state_file_of_another_rollout_is_refused(files: tuple[Path, Path]) -> None:
    policy, state = files
    FileStateStore(state).create(RolloutState("older-experiment"))
    with pytest.raises(ValueError, match="holds rollout 'older-experiment'"):
        command.build_controller(parse("--policy", str(policy), "--state", str(state)))


def test_run_exits_2_with_the_located_policy_error(
    files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    policy, state = files
    policy.write_text(POLICY.replace("10%", "25%"))
    args = parse("--policy", str(policy), "--state", str(state))
    assert command.run(args) == 2
    err = capsys.readouterr().err
    assert f"{policy}:3: policy.initial_share: must be at most 10%" in err
    assert not state.exists()


def test_help_lists_every_setting(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse("--help")
    out = capsys.readouterr().out
    for setting in command.SETTINGS:
        assert setting.env in out
    assert "--clock-speed" in out and "EXTPROC_ENVOY_ADMIN" in out


def test_replicas_and_restarts_share_the_stored_clock_origin(files: tuple[Path, Path]) -> None:
    """The first replica stores its scaled clock's origin with the state; a second replica
    (or a restart) started later, with or without --clock-start, reads the same calendar.
    Flags that disagree with the stored origin are refused, naming it."""
    policy, state = files
    first_args = ("--clock-start", "2026-11-25T07:00:00+01:00", "--clock-speed", "720")
    first = command.build_controller(
        parse("--policy", str(policy), "--state", str(state), *first_args)
    )
    again = command.build_controller(
        parse("--policy", str(policy), "--state", str(state), *first_args)
    )
    bare = command.build_controller(parse("--policy", str(policy), "--state", str(state)))
    speed_only = parse("--policy", str(policy), "--state", str(state), "--clock-speed", "720")
    follower = command.build_controller(speed_only)
    origins = {c.clock.origin for c in (first, again, bare, follower)}  # type: ignore[attr-defined]
    assert len(origins) == 1
    assert origins.pop().start == dt.datetime(2026, 11, 25, 6, 0, tzinfo=dt.UTC).timestamp()
    with pytest.raises(
        ValueError, match=r"--clock-speed 60: this rollout's stored clock runs at x720"
    ):
        command.build_controller(
            parse("--policy", str(policy), "--state", str(state), "--clock-speed", "60")
        )
    with pytest.raises(ValueError, match=r"drop --clock-start to follow it"):
        command.build_controller(
            parse(
                "--policy",
                str(policy),
                "--state",
                str(state),
                "--clock-start",
                "2026-12-01T00:00:00",
                "--clock-speed",
                "720",
            )
        )


def test_a_controller_waits_for_etcd_at_start_instead_of_exiting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from extproc.rollout.stores.etcd_types import EtcdUnavailable

    pauses: list[float] = []
    monkeypatch.setattr(command.time, "sleep", pauses.append)
    answers: list[object] = [
        EtcdUnavailable("get: quorum lost", "quorum_lost"),
        EtcdUnavailable("get: unreachable", "unreachable"),
        "the state",
    ]

    def read() -> object:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert command._when_etcd_answers("reading the state", read) == "the state"
    assert pauses == [0.1, 0.2]
    with pytest.raises(OSError, match="disk"):  # a file store's failure is not waited for
        command._when_etcd_answers(
            "reading the state", lambda: (_ for _ in ()).throw(OSError("disk"))
        )
