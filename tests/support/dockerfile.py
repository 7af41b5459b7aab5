"""Read a Dockerfile into instructions (no Docker here: the tests check what a parser can).

Handles what deploy/Dockerfile uses: comments (also between continuation lines, as Docker
does), backslash continuations, the exec (JSON) form, ``--option=value`` before arguments.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: FROM, RUN, USER, ...
    text: str  # the arguments, continuations joined
    line: int  # where it starts (1-based)
    stage: int  # index of the FROM it belongs to

    def exec_form(self) -> list[str]:
        """The argv of a JSON-form instruction (after any --option), e.g. ENTRYPOINT."""
        start = self.text.find("[")
        if start < 0:
            raise ValueError(f"line {self.line}: {self.keyword} is not in exec (JSON) form")
        argv = json.loads(self.text[start:])
        if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
            raise ValueError(f"line {self.line}: {self.keyword} is not a list of strings")
        return argv

    def words(self) -> list[str]:
        return shlex.split(self.text)


def parse(path: Path) -> list[Instruction]:
    out: list[Instruction] = []
    pending: list[str] = []
    start = 0
    stage = -1
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if line.startswith("#") or (not line and not pending):
            continue
        if not pending:
            start = number
        continued = line.endswith("\\")
        pending.append(line[:-1].strip() if continued else line)
        if continued:
            continue
        keyword, _, text = " ".join(p for p in pending if p).partition(" ")
        pending = []
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        out.append(Instruction(keyword, text.strip(), start, stage))
    return out


def env_of(instructions: list[Instruction], stage: int) -> dict[str, str]:
    """The ENV values set in ``stage`` (``KEY=value`` form)."""
    found: dict[str, str] = {}
    for ins in instructions:
        if ins.keyword == "ENV" and ins.stage == stage:
            for word in ins.words():
                key, _, value = word.partition("=")
                found[key] = value
    return found
