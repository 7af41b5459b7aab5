"""A users file for the dry run: CSV with a header row, one user per line.

```
id,region,device,x-channel
alice,eu-west,ios-17,
bob,us-east,android-14,beta
```

``id`` (required) is the user's sticky key, as the sidecar reads it from the key header;
an empty ``id`` is a user without a key. ``region`` and ``device`` (optional) are the
targeting attributes; any other column is a request header of that (lower-case) name, for
header rules. An empty cell means the header is absent. Errors say
``FILE:LINE: column: what is wrong``.
"""

from __future__ import annotations

import array
import csv
import re
from collections.abc import Iterable
from pathlib import Path

from extproc.diff.population import Group, ListPopulation

_HEADER_NAME = re.compile(r"[a-z0-9!#$%&'*+.^_`|~-]+")
MAX_USERS = 20_000_000  # held in memory: ~0.25 GB per million users


class UsersFileError(ValueError):
    """``FILE:LINE: column: message``."""

    def __init__(self, file: str, line: int, column: str, message: str) -> None:
        super().__init__(f"{file}:{line}: {column}: {message}")


def load_users(path: str | Path, key_headers: Iterable[str] = ()) -> ListPopulation:
    """The users of ``path``; ``key_headers`` (the rules' key headers) may not be columns."""
    name = str(path)
    try:
        with open(path, encoding="utf-8", newline="") as stream:
            return _read(name, csv.reader(stream), set(key_headers))
    except OSError as exc:
        raise UsersFileError(name, 0, "(file)", f"cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise UsersFileError(name, 0, "(file)", f"not UTF-8: {exc.reason}") from exc
    except csv.Error as exc:
        raise UsersFileError(name, 0, "(file)", f"not CSV: {exc}") from exc


def _read(name: str, rows: Iterable[list[str]], key_headers: set[str]) -> ListPopulation:
    reader = iter(rows)
    header = next(reader, None)
    if header is None:
        raise UsersFileError(name, 1, "(header)", "empty file; the first line names the columns")
    columns = [c.strip().lower() for c in header]
    _check_columns(name, columns, key_headers)
    at = {c: i for i, c in enumerate(columns)}
    extra = [c for c in columns if c not in ("id", "region", "device")]
    ids: list[str] = []
    group_of = array.array("l")
    lines = array.array("l")
    groups: dict[Group, int] = {}
    index: dict[str, int] = {}  # id -> position (duplicates; force-list lookups)
    for line, row in enumerate(reader, start=2):
        if not row:
            continue
        if len(row) != len(columns):
            raise UsersFileError(
                name, line, "(row)", f"{len(row)} cells, the header names {len(columns)}"
            )
        user_id = row[at["id"]]
        if user_id and user_id in index:
            first = lines[index[user_id]]
            raise UsersFileError(name, line, "id", f"duplicate id (first on line {first})")
        if len(ids) >= MAX_USERS:
            raise UsersFileError(name, line, "(row)", f"more than {MAX_USERS} users")
        if user_id:
            index[user_id] = len(ids)
        group = Group(
            region=_cell(row, at.get("region")),
            device=_cell(row, at.get("device")),
            headers=tuple((c, row[at[c]]) for c in extra if row[at[c]]),
        )
        ids.append(user_id)
        lines.append(line)
        group_of.append(groups.setdefault(group, len(groups)))
    return ListPopulation(ids, group_of, list(groups), index=index)


def _cell(row: list[str], index: int | None) -> str | None:
    if index is None or not row[index]:
        return None
    return row[index]


def _check_columns(name: str, columns: list[str], key_headers: set[str]) -> None:
    if "id" not in columns:
        raise UsersFileError(name, 1, "(header)", "no 'id' column (the user's sticky key)")
    seen = set()
    for column in columns:
        if column in seen:
            raise UsersFileError(name, 1, column, "duplicate column")
        seen.add(column)
        if not _HEADER_NAME.fullmatch(column):
            raise UsersFileError(name, 1, column or "(empty)", "not a header name")
        if column in key_headers:
            raise UsersFileError(name, 1, column, "a key header of the rules; the key goes in 'id'")
