"""The attribute values of a synthetic population: every region the rules name, a device
that each device glob of the rules matches, every value a header rule lists, a few common
values no rule names, and "absent", so every rule of OLD and NEW (and the default) gets
users."""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence

from extproc.core.model import Rules

DEFAULT_REGIONS = ("us-east", "us-west", "eu-west", "ap-southeast", "cn-north")
DEFAULT_DEVICES = ("ios-17", "ios-18", "android-14", "android-15", "web", "harmonyos-4")
#: Header value combinations beyond this are listed one header at a time.
MAX_HEADER_COMBINATIONS = 256


def regions(rules: Sequence[Rules]) -> list[str | None]:
    named = {r for rs in rules for rule in rs.rules if rule.when.regions for r in rule.when.regions}
    return [*sorted(named | set(DEFAULT_REGIONS)), None]


def devices(rules: Sequence[Rules]) -> list[str | None]:
    found = set(DEFAULT_DEVICES)
    for rs in rules:
        for rule in rs.rules:
            for pattern in rule.when.devices or ():
                example = glob_example(pattern)
                if example is not None:
                    found.add(example)
    return [*sorted(found), None]


def headers(rules: Sequence[Rules]) -> list[tuple[tuple[str, str], ...]]:
    """Combinations of the header values the rules list (a regex rule adds no value, only
    "absent"); ``[()]`` when no rule reads a header."""
    values: dict[str, set[str]] = {}
    for rs in rules:
        for rule in rs.rules:
            for match in rule.when.headers:
                values.setdefault(match.name, set()).update(match.values)
    names = sorted(values)
    choices = [[None, *sorted(values[n])] for n in names]
    combos: list[tuple[str | None, ...]] = []
    if _product_size(choices) <= MAX_HEADER_COMBINATIONS:
        combos = list(itertools.product(*choices))
    else:
        combos = [tuple(None for _ in names)]
        for i, options in enumerate(choices):
            combos += [tuple(v if j == i else None for j in range(len(names))) for v in options[1:]]
    return [
        tuple((n, v) for n, v in zip(names, combo, strict=True) if v is not None)
        for combo in combos
    ]


def _product_size(choices: list[list[str | None]]) -> int:
    size = 1
    for options in choices:
        size *= len(options)
    return size


def glob_example(pattern: re.Pattern[str]) -> str | None:
    """A value that ``pattern`` (a glob compiled by the loader) fully matches, or None.

    Reads the regex ``fnmatch.translate`` wrote: wildcards become ``x``, a character set
    its first member; the result is checked against the pattern itself.
    """
    text = pattern.pattern
    text = text.removeprefix("(?s:").removesuffix(r")\Z").replace("(?>.*?", "x").replace(")", "")
    out, i = [], 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
        elif text.startswith(".*", i):
            out.append("x")
            i += 2
        elif ch == ".":
            out.append("x")
            i += 1
        elif ch == "[":
            end = text.find("]", i + 2)
            members = text[i + 1 : end] if end > 0 else ""
            out.append(members[0] if members and members[0] != "^" else "x")
            i = end + 1 if end > 0 else len(text)
        else:
            out.append(ch)
            i += 1
    example = "".join(out)
    return example if pattern.fullmatch(example) else None
