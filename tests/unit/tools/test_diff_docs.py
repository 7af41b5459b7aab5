"""docs/rules-diff.md stays true: every flag it shows exists, its exit-code table is the
code's, and its pre-commit hook is valid YAML calling `extproc diff`."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from extproc.diff import report
from tests.support.cli_help import help_text

DOC = (Path(__file__).resolve().parents[3] / "docs" / "rules-diff.md").read_text("utf-8")


def test_every_flag_in_the_page_is_a_flag_of_extproc_diff() -> None:
    text = help_text("extproc", "diff")
    usage = DOC.split("```\n", 1)[1].split("```", 1)[0]  # the synopsis block
    lines = [usage, *re.findall(r"extproc diff [^\n`]*", DOC)]
    named = {f for line in lines for f in re.findall(r"(?<![\w-])--[a-z-]+", line)}
    assert named >= {"--users", "--synthetic", "--state", "--max-moved", "--allow-moves"}
    assert [f for f in sorted(named) if f not in text] == []


def test_the_exit_code_table_is_the_codes() -> None:
    rows = dict(re.findall(r"^\| (\d) \| (.+?) \|$", DOC, flags=re.MULTILINE))
    assert set(map(int, rows)) == {
        report.EXIT_OK, report.EXIT_INVALID, report.EXIT_USAGE, report.EXIT_SALT, report.EXIT_MOVES
    }  # fmt: skip
    assert "salt" in rows[str(report.EXIT_SALT)] and "--new-experiment" in rows["3"]
    assert "--max-moved" in rows[str(report.EXIT_MOVES)]


def test_the_pre_commit_hook_is_valid_and_runs_the_gate() -> None:
    block = DOC.split("```yaml\n", 1)[1].split("```", 1)[0]
    hook = yaml.safe_load(block)["repos"][0]["hooks"][0]
    assert hook["language"] == "system" and hook["pass_filenames"] is False
    assert "extproc diff " in hook["entry"] and "${RULES_DIFF_FLAGS:-}" in hook["entry"]
