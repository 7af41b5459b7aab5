"""The one error type of the rules pipeline, always located in the source file."""

from __future__ import annotations


class RulesError(Exception):
    """A rules file that cannot be used: ``FILE:LINE: field.path: message``.

    ``path`` is the dotted field path (``rules[2].when.device``) or ``(file)``
    for problems with the file as a whole; ``line`` is 1-based.
    """

    def __init__(self, file: str, line: int, path: str, message: str) -> None:
        super().__init__(f"{file}:{line}: {path}: {message}")
        self.file = file
        self.line = line
        self.path = path
        self.message = message
