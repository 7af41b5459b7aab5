"""`extproc diff` as CI runs it: exit codes, JSON report, users file, rollout state, no raw
ids in the output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from extproc.cli import main
from extproc.rollout.state import Phase, RolloutState
from extproc.rollout.stores.state_store import FileStateStore
from extproc.telemetry.privacy import IdHasher

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples/rules.yaml"
TEXT = EXAMPLE.read_text("utf-8")


def edited(tmp_path: Path, old: str, new: str) -> str:
    assert old in TEXT
    path = tmp_path / "new.yaml"
    path.write_text(TEXT.replace(old, new, 1))
    return str(path)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    code = main(["diff", str(EXAMPLE), *args, "--synthetic", "50000", "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_an_unchanged_file_passes(capsys: pytest.CaptureFixture[str]) -> None:
    code, report = run(capsys, str(EXAMPLE))
    assert code == 0 and report["exit"] == 0
    assert report["unchanged"] == report["users"] == 50_000
    assert report["moved"]["v1->v2"] == {"users": 0, "share": "0%"}


def test_a_wider_share_fails_unless_acknowledged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    new = edited(tmp_path, "share: 20%", "share: 40%")  # the ios-first rule
    code, report = run(capsys, new)
    assert code == 4 and report["moved"]["v2->v1"]["users"] == 0
    assert [r["rule"] for r in report["by_rule"]] == ["rules.ios-first -> rules.ios-first"]
    assert {r["device"] for r in report["by_device"]} <= {"ios-17", "ios-18", "ios-x"}
    assert run(capsys, new, "--allow-moves")[0] == 0
    # 20 points of the iOS users outside the EU: 3/8 devices x 5/7 regions x 20 % = 5.4 %
    assert run(capsys, new, "--max-moved", "5%")[0] == 4
    assert run(capsys, new, "--max-moved", "6%")[0] == 0


def test_a_reordered_rule_moves_users_down(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    new = edited(
        tmp_path, "region: [eu-west, eu-central]", "region: [eu-west, eu-central, us-east]"
    )
    code, report = run(capsys, new)
    assert code == 4 and report["moved"]["v1->v2"]["users"] == 0
    assert [r["region"] for r in report["by_region"]] == ["us-east"]
    assert report["by_rule"][0]["rule"] in (
        "default -> rules.eu-consent-pending",
        "rules.ios-first -> rules.eu-consent-pending",
    )


def test_a_new_salt_always_fails_without_new_experiment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    new = edited(tmp_path, "salt: gpt-sovits-v2-2026-11", "salt: gpt-sovits-v2-2026-12")
    code, report = run(capsys, new, "--allow-moves", "--max-moved", "100%")
    assert code == 3 and report["salt_changed"]
    assert run(capsys, new, "--new-experiment")[0] == 0


def test_unusable_inputs_and_bad_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("rollout: {name: r}\n")
    assert main(["diff", str(EXAMPLE), str(broken)]) == 1
    assert capsys.readouterr().err.startswith(f"extproc diff: {broken}:1: rollout: ")
    assert main(["diff", str(EXAMPLE), str(EXAMPLE), "--max-moved", "1"]) == 2
    assert "write a percentage like 1%" in capsys.readouterr().err
    assert main(["diff", str(EXAMPLE), str(EXAMPLE), "--users", str(tmp_path / "none.csv")]) == 1
    assert "cannot read" in capsys.readouterr().err


def test_users_file_samples_are_keyed_hashes_never_raw_ids(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXTPROC_ID_HASH_KEY", "k1")
    users = tmp_path / "users.csv"
    rows = [f"person-{i},us-east,android-14" for i in range(300)] + ["qa-001,eu-west,", "vip-42,,"]
    users.write_text("id,region,device\n" + "\n".join(rows) + "\n")
    new = edited(tmp_path, "v2: [qa-001, qa-002]", "v2: [qa-002, person-7]")
    new_share = Path(new).read_text().replace("share: 10%", "share: 30%", 1)
    Path(new).write_text(new_share)
    code = main(["diff", str(EXAMPLE), new, "--users", str(users), "--sample", "400"])
    out = capsys.readouterr().out
    assert code == 4
    assert "person-" not in out and "qa-001" not in out
    hasher = IdHasher(b"k1")
    assert hasher.hash("qa-001") in out and hasher.hash("person-7") in out
    assert "force.v2 -> rules.eu-consent-pending" in out


def test_the_rollout_state_decides_the_default_share(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With --state, the rules file's default share is not what users get: editing it moves
    nobody; the state's rollback sends everyone to v1 under both files."""
    new = edited(tmp_path, "share: 10%                       # v2", "share: 50%  # v2")
    state = tmp_path / "state.json"
    FileStateStore(state).create(
        RolloutState("gpt-sovits-v2", revision=3, phase=Phase.RAMPING, stage=2, share=2000)
    )
    assert run(capsys, new)[0] == 4
    code, report = run(capsys, new, "--state", str(state))
    assert code == 0 and report["unchanged"] == 50_000
    assert report["new"]["version"].endswith("+r3")
    renamed = edited(tmp_path, "name: gpt-sovits-v2", "name: gpt-sovits-v3")
    assert main(["diff", str(EXAMPLE), renamed, "--state", str(state), "--synthetic", "100"]) == 4
    assert "rollout 'gpt-sovits-v3' is not the state's 'gpt-sovits-v2'" in capsys.readouterr().err


def test_as_a_console_command(tmp_path: Path) -> None:
    new = edited(tmp_path, "share: 20%", "share: 19%")
    out = subprocess.run(
        [sys.executable, "-m", "extproc", "diff", str(EXAMPLE), new, "--synthetic", "20000"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 4, out.stderr
    assert "verdict: exit 4: " in out.stdout and "v2->v1" in out.stdout


def test_a_header_rule_edit_shows_on_synthetic_users(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with_rule = TEXT + "  - {name: beta, when: {headers: {x-channel: [beta]}}, cohort: v2}\n"
    old, new = tmp_path / "old.yaml", tmp_path / "new.yaml"
    old.write_text(with_rule)
    new.write_text(with_rule.replace("[beta]", "[beta, canary]"))
    code = main(["diff", str(old), str(new), "--synthetic", "30000", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 4 and report["moved"]["v2->v1"]["users"] == 0
    # Appended last: EU and iOS users match the earlier rules first; only the default moves.
    assert [r["rule"] for r in report["by_rule"]] == ["default -> rules.beta"]
