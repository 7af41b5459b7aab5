"""Check a command line against the real ``--help`` of the program it names.

``unknown_parts(program, argv)`` runs ``program --help``, then ``program SUB --help`` for each
leading subcommand of ``argv`` (``rollout controller``), and returns every subcommand or
``--flag`` of ``argv`` that the help text of the innermost subcommand does not name.
"""

from __future__ import annotations

import functools
import re
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent


def program_path(name: str) -> str:
    """The console script ``name`` next to this Python (the venv's extproc, envoy)."""
    return str(BIN / name)


@functools.cache
def help_text(program: str, *subcommands: str) -> str:
    done = subprocess.run(
        [program_path(program), *subcommands, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # envoy prints its usage and exits 0; argparse prints to stdout and exits 0.
    if done.returncode != 0:
        raise AssertionError(
            f"{program} {' '.join(subcommands)} --help exited {done.returncode}: {done.stderr}"
        )
    return done.stdout + done.stderr


def _names(text: str, word: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", text) is not None


def split_subcommands(argv: list[str]) -> tuple[list[str], list[str]]:
    """(leading words that are not options, the rest)."""
    for i, word in enumerate(argv):
        if word.startswith("-"):
            return argv[:i], argv[i:]
    return argv, []


def flags_of(argv: list[str]) -> list[str]:
    return [word.split("=", 1)[0] for word in argv if word.startswith("--")]


def unknown_parts(program: str, argv: list[str]) -> list[str]:
    """Subcommands and flags of ``argv`` that ``program``'s help does not know."""
    subcommands, rest = split_subcommands(argv)
    unknown: list[str] = []
    path: list[str] = []
    for sub in subcommands:
        if not _names(help_text(program, *path), sub):
            unknown.append(" ".join([program, *path, sub]))
            return unknown
        path.append(sub)
    text = help_text(program, *path)
    unknown += [flag for flag in flags_of(rest) if not _names(text, flag)]
    return unknown
