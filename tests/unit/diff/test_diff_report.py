"""The verdict CI acts on (exit codes) and the users file's located errors."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from extproc.core.loader import parse_rules
from extproc.diff.engine import Diff, run_diff
from extproc.diff.population import SyntheticPopulation
from extproc.diff.report import (
    EXIT_MOVES,
    EXIT_OK,
    EXIT_SALT,
    Gate,
    render_text,
    summary,
    verdict,
)
from extproc.diff.users_file import UsersFileError, load_users

OLD = parse_rules(
    "old.yaml",
    b"""rollout: {name: r, salt: s1, share: 10%}
rules:
  - {name: eu, when: {region: [eu-west]}, cohort: v1}
""",
)


def diff(**changes: object) -> Diff:
    population = SyntheticPopulation(20_000, ["eu-west", "us-east", None], ["ios-17", None])
    return run_diff(OLD, replace(OLD, **changes), population, lambda key: "h", sample=2)


@pytest.mark.parametrize(
    ("changes", "gate", "code", "reason"),
    [
        ({}, Gate(0.0), EXIT_OK, "moves within --max-moved 0%"),
        ({"share": 1100}, Gate(0.01), EXIT_OK, "moves within --max-moved 1%"),
        ({"share": 1300}, Gate(0.01), EXIT_MOVES, "v1->v2 ("),
        ({"share": 1300}, Gate(0.01, allow_moves=True), EXIT_OK, "acknowledged (--allow-moves)"),
        ({"share": 700}, Gate(0.01), EXIT_MOVES, "v2->v1 ("),
        ({"salt": "s2"}, Gate(1.0, allow_moves=True), EXIT_SALT, "the salt changed ('s1' -> 's2')"),
        ({"salt": "s2"}, Gate(0.0, new_experiment=True), EXIT_OK, "salt change acknowledged"),
    ],
)
def test_verdicts(changes: dict[str, object], gate: Gate, code: int, reason: str) -> None:
    got_code, got_reason = verdict(diff(**changes), gate)
    assert got_code == code and reason in got_reason, got_reason


def test_moves_are_counted_per_direction_against_the_limit() -> None:
    """Raising the default share 10 % -> 13 % moves ~3 % of the non-EU two thirds up."""
    d = diff(share=1300)
    assert d.moved("v2->v1") == 0
    assert 0.015 < d.moved("v1->v2") / d.users < 0.025
    data = summary(d, Gate(0.01))
    assert [r["rule"] for r in data["by_rule"]] == ["default -> default"]
    assert {r["region"] for r in data["by_region"]} == {"us-east", "(none)"}  # EU is forced
    assert data["samples"] == {"v1->v2": ["h", "h"], "v2->v1": []}
    text = render_text(data)
    assert text.splitlines()[-1].startswith("verdict: exit 4: ")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "users.csv:1: (header): empty file; the first line names the columns"),
        ("region\neu\n", "users.csv:1: (header): no 'id' column (the user's sticky key)"),
        ("id,id\na,b\n", "users.csv:1: id: duplicate column"),
        ("id,Bad Name\na,b\n", "users.csv:1: bad name: not a header name"),
        ("id,x-user-id\na,b\n",
         "users.csv:1: x-user-id: a key header of the rules; the key goes in 'id'"),
        ("id,region\na,eu\nb\n", "users.csv:3: (row): 1 cells, the header names 2"),
        ("id\na\nb\na\n", "users.csv:4: id: duplicate id (first on line 2)"),
    ],
)  # fmt: skip
def test_users_file_errors_are_located(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "users.csv"
    path.write_text(text)
    with pytest.raises(UsersFileError) as err:
        load_users(path, {"x-user-id"})
    assert str(err.value) == message.replace("users.csv", str(path))


def test_users_file_groups_users_by_attributes(tmp_path: Path) -> None:
    path = tmp_path / "users.csv"
    path.write_text("id,region,device,X-Channel\na,eu,ios-1,\nb,eu,ios-1,\n,us,,beta\n")
    population = load_users(path)
    assert population.size == 3 and len(population.groups) == 2
    assert population.user(2) == ("", 1)
    assert population.groups[1].headers == (("x-channel", "beta"),)
    assert population.groups[1].device is None
