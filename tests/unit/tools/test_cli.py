"""`extproc check` and `extproc explain` as a platform team's CI would run them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from extproc.cli import main

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples/rules.yaml"
INVALID = ROOT / "tests/fixtures/rules_invalid"


def test_check_valid_file_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(EXAMPLE)]) == 0
    assert capsys.readouterr().out.startswith(f"{EXAMPLE}: ok: gpt-sovits-v2 version ")


def test_check_reports_every_invalid_file_and_exits_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    bad = [INVALID / "share_too_fine.yaml", INVALID / "unknown_nested_key.yaml"]
    assert main(["check", str(EXAMPLE), *map(str, bad)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"{bad[0]}:5: rollout.share: '10.005%' is finer than the 0.01% resolution",
        f"{bad[1]}:5: rollout.shares: unknown key; allowed: name, salt, share, kill_switch",
    ]


def test_check_as_a_console_command() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "extproc", "check", str(INVALID / "bad_glob.yaml")],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 1
    assert out.stderr.strip().endswith(
        "rules[0].when.device[0]: glob 'ios-[0-9' has an unclosed '['"
    )


def explain(capsys: pytest.CaptureFixture[str], *headers: str) -> dict[str, object]:
    args = ["explain", "--rules", str(EXAMPLE)]
    for h in headers:
        args += ["-H", h]
    assert main(args) == 0
    return json.loads(capsys.readouterr().out)


def test_explain_split_decision(capsys: pytest.CaptureFixture[str]) -> None:
    from extproc.core.decide import decide
    from extproc.core.loader import load_rules

    got = explain(capsys, "X-User-Id=alice", "x-region=us-east")
    want = decide(load_rules(EXAMPLE), {"x-user-id": "alice", "x-region": "us-east"})
    assert got == {
        "rollout": "gpt-sovits-v2",
        "cohort": want.cohort.value,
        "reason": "split",
        "rule": "default",
        "bucket": want.bucket,
        "share": "10%",
        "version": want.version,
        "key_header": "x-user-id",
    }


def test_explain_forced_and_rule_decisions(capsys: pytest.CaptureFixture[str]) -> None:
    forced = explain(capsys, "x-user-id=qa-001")
    assert (forced["cohort"], forced["reason"], forced["rule"]) == (
        "v2",
        "targeting_match",
        "force.v2",
    )
    assert forced["bucket"] is None
    eu = explain(capsys, "x-user-id=qa-009", "x-region=eu-west")
    assert (eu["cohort"], eu["rule"]) == ("v1", "rules.eu-consent-pending")
    missing = explain(capsys)
    assert (missing["cohort"], missing["reason"], missing["rule"]) == (
        "v1",
        "default",
        "missing_key",
    )


def test_explain_rejects_a_malformed_header(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", "--rules", str(EXAMPLE), "-H", "no-equals-sign"]) == 2
    assert "expected NAME=VALUE" in capsys.readouterr().err


def test_check_validates_policy_files_too(capsys: pytest.CaptureFixture[str]) -> None:
    policy = ROOT / "examples/policy.yaml"
    bad = ROOT / "tests/fixtures/policy_invalid/bad_cohort.yaml"
    assert main(["check", str(policy)]) == 0
    assert capsys.readouterr().out.startswith(f"{policy}: ok: policy for gpt-sovits-v2")
    assert main(["check", str(policy), str(bad)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"{bad}:6: policy.guards[0].cohort: 'v3' is not a cohort; allowed: v2, v1, v2-v1"
