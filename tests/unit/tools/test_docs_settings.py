"""The settings tables in docs/ tell the truth: every environment variable the code declares
is on its page, and a documented default is the code's default."""

from __future__ import annotations

import re
from pathlib import Path
from types import ModuleType

import pytest

from extproc import settings
from extproc.rollout import controller_command, fleet_control
from extproc.rollout.admin import access
from extproc.settings import Setting

ROOT = Path(__file__).resolve().parents[3]
PAGES: dict[str, tuple[ModuleType, ...]] = {
    "docs/sidecar-server.md": (settings,),
    "docs/rollout.md": (controller_command, fleet_control, access),
}


def declared(*modules: ModuleType) -> list[Setting]:
    found = {v.env: v for m in modules for v in vars(m).values() if isinstance(v, Setting)}
    return sorted(found.values(), key=lambda s: s.env)


def mismatches(page: str, declared_settings: list[Setting]) -> list[str]:
    """What a page gets wrong: a variable it never names, or a table row whose default
    column is not the code's default (an empty default is written as "(...)")."""
    problems = []
    for setting in declared_settings:
        name = f"`{setting.env}`"
        if name not in page:
            problems.append(f"{setting.env}: not documented")
            continue
        row = re.search(rf"^\| {re.escape(name)}[^|]*\| ([^|]+) \|", page, re.MULTILINE)
        if row is None:
            if setting.default:
                problems.append(f"{setting.env}: no table row with its default")
            continue
        documented = row.group(1).strip()
        if setting.default and not documented.startswith(f"`{setting.default}`"):
            problems.append(f"{setting.env}: documented {documented}, code {setting.default!r}")
        elif not setting.default and not documented.startswith("("):
            problems.append(f"{setting.env}: documented {documented}, code has no default")
    return problems


@pytest.mark.parametrize("page", sorted(PAGES))
def test_the_settings_tables_match_the_code(page: str) -> None:
    assert mismatches((ROOT / page).read_text(), declared(*PAGES[page])) == []


def test_a_wrong_or_missing_default_is_caught() -> None:
    page = (
        "| variable | default | meaning |\n| --- | --- | --- |\n"
        "| `EXTPROC_A` (`--a`) | `2` | a |\n"
        "| `EXTPROC_B` | `x` | b |\n"
        "| `EXTPROC_C` | (required) | c |\n"
    )
    code = [
        Setting("EXTPROC_A", "1", ""),
        Setting("EXTPROC_B", "x", ""),
        Setting("EXTPROC_C", "", ""),
        Setting("EXTPROC_D", "", ""),
    ]
    assert mismatches(page, code) == [
        "EXTPROC_A: documented `2`, code '1'",
        "EXTPROC_D: not documented",
    ]
