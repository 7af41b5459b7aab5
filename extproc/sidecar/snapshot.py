"""The live rules: one reference to an immutable snapshot, swapped whole on reload."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from extproc.core.decide import Decider
from extproc.core.errors import RulesError
from extproc.core.loader import load_rules

log = logging.getLogger("extproc.rules")


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything a decision needs, frozen together so no reader sees a torn state."""

    decider: Decider
    loaded_at: float

    @property
    def version(self) -> str:
        return self.decider.rules.version


@dataclass(frozen=True, slots=True)
class ReloadResult:
    """Outcome of one reload attempt: 'loaded', 'unchanged' or 'failed'."""

    outcome: str
    version: str | None
    error: RulesError | None = None


class RulesHolder:
    """Holds the current snapshot; ``reload()`` builds fully, then swaps one reference.

    A failed build keeps the last good snapshot serving; the failure is logged
    with its ``FILE:LINE`` and returned so the caller can count it.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.current: Snapshot | None = None
        self.last_error: RulesError | None = None

    def reload(self) -> ReloadResult:
        try:
            rules = load_rules(self.path)
        except RulesError as exc:
            self.last_error = exc
            if self.current is None:
                log.error("rules rejected, not serving yet: %s", exc)
            else:
                log.error("rules rejected, still serving %s: %s", self.current.version, exc)
            return ReloadResult("failed", None, exc)
        self.last_error = None
        if self.current is not None and self.current.version == rules.version:
            return ReloadResult("unchanged", rules.version)
        old = self.current.version if self.current else None
        self.current = Snapshot(Decider(rules), time.time())  # the one swap
        log.info(
            "rules loaded: %s version %s (was %s), share %s, %d rules",
            self.path,
            rules.version,
            old,
            rules.share,
            len(rules.rules),
        )
        return ReloadResult("loaded", rules.version)
