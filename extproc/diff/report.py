"""The dry run's verdict (the exit code CI acts on) and its report (JSON and text).

Exit codes (``extproc diff``):
  0  no gate tripped (or every move acknowledged)
  1  a rules, users or state input cannot be used (the message says where)
  2  bad usage (flags)
  3  the salt changed and ``--new-experiment`` was not given: everyone is reshuffled
  4  more users than ``--max-moved`` would move v1 -> v2 or v2 -> v1, and
     ``--allow-moves`` was not given
The salt gate comes first; ``--new-experiment`` acknowledges the salt change and the
reshuffle it implies, so the move gate is not applied to it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from extproc.diff.engine import DOWN, UP, Cell, Diff

EXIT_OK, EXIT_INVALID, EXIT_USAGE, EXIT_SALT, EXIT_MOVES = 0, 1, 2, 3, 4
DIRECTIONS = (UP, DOWN)


@dataclass(frozen=True, slots=True)
class Gate:
    max_moved: float  # fraction of the population, per direction
    allow_moves: bool = False
    new_experiment: bool = False


def verdict(diff: Diff, gate: Gate) -> tuple[int, str]:
    """The exit code and the sentence that explains it."""
    if diff.salt_changed:
        if not gate.new_experiment:
            return EXIT_SALT, (
                f"the salt changed ({diff.old.salt!r} -> {diff.new.salt!r}): every user is "
                "reshuffled; pass --new-experiment if a new experiment is intended"
            )
        return EXIT_OK, "salt change acknowledged (--new-experiment)"
    over = [d for d in DIRECTIONS if diff.moved(d) > gate.max_moved * diff.users]
    if not over:
        return EXIT_OK, f"moves within --max-moved {_pct(gate.max_moved)}"
    text = ", ".join(
        f"{diff.moved(d)} users {d} ({_pct(diff.moved(d) / diff.users)})" for d in over
    )
    if gate.allow_moves:
        return EXIT_OK, f"{text} acknowledged (--allow-moves)"
    return EXIT_MOVES, (
        f"{text}: above --max-moved {_pct(gate.max_moved)}; pass --allow-moves if intended"
    )


def summary(diff: Diff, gate: Gate) -> dict[str, Any]:
    """Everything the report shows, as JSON-ready data."""
    code, reason = verdict(diff, gate)
    moved = {d: diff.moved(d) for d in DIRECTIONS}
    groups = diff.groups
    return {
        "old": _rules_json(diff.old),
        "new": _rules_json(diff.new),
        "users": diff.users,
        "unchanged": diff.users - sum(moved.values()),
        "moved": {d: {"users": n, "share": _pct(n / diff.users)} for d, n in moved.items()},
        "salt_changed": diff.salt_changed,
        "by_rule": _breakdown(diff, "rule", lambda c: f"{c.old_rule} -> {c.new_rule}"),
        "by_region": _breakdown(diff, "region", lambda c: groups[c.group].region or "(none)"),
        "by_device": _breakdown(diff, "device", lambda c: groups[c.group].device or "(none)"),
        "samples": {d: list(diff.samples.get(d, ())) for d in DIRECTIONS},
        "exit": code,
        "verdict": reason,
    }


def render_text(data: dict[str, Any]) -> str:
    old, new = data["old"], data["new"]
    lines = [
        f"old: {old['file']} (version {old['version']}, salt {old['salt']})",
        f"new: {new['file']} (version {new['version']}, salt {new['salt']})",
        f"users: {data['users']}, unchanged {data['unchanged']}",
    ]
    for d, moved in data["moved"].items():
        lines.append(f"moved {d}: {moved['users']} ({moved['share']})")
    for title, key in (("rule", "by_rule"), ("region", "by_region"), ("device", "by_device")):
        rows = data[key]
        if not rows:
            continue
        width = max(len(title), *(len(r[title]) for r in rows))
        lines.append("")
        lines.append(f"{title:<{width}}  {'users':>10}  {UP:>10}  {DOWN:>10}")
        for r in rows:
            lines.append(f"{r[title]:<{width}}  {r['users']:>10}  {r[UP]:>10}  {r[DOWN]:>10}")
    for d, ids in data["samples"].items():
        if ids:
            lines.append(f"sample {d} (keyed hashes): {' '.join(ids)}")
    lines.append(f"verdict: exit {data['exit']}: {data['verdict']}")
    return "\n".join(lines)


def _breakdown(diff: Diff, title: str, key: Callable[[Cell], str]) -> list[dict[str, Any]]:
    """Users, and moved users per direction, per ``key``; only keys with moves, most first."""
    users: Counter[str] = Counter()
    moves: dict[str, Counter[str]] = {d: Counter() for d in DIRECTIONS}
    for cell, n in diff.cells.items():
        k = key(cell)
        users[k] += n
        if cell.old_v2 != cell.new_v2:
            moves[UP if cell.new_v2 else DOWN][k] += n
    moved = {k for d in DIRECTIONS for k in moves[d]}
    rows = [{title: k, "users": users[k], **{d: moves[d][k] for d in DIRECTIONS}} for k in moved]
    return sorted(rows, key=lambda r: (-(r[UP] + r[DOWN]), r[title]))


def _rules_json(rules: Any) -> dict[str, Any]:
    return {"file": rules.source, "version": rules.version, "salt": rules.salt}


def _pct(fraction: float) -> str:
    text = f"{fraction * 100:.4f}".rstrip("0").rstrip(".")
    return f"{text}%"
