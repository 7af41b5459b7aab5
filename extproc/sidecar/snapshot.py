"""The live decision input: one reference to an immutable snapshot, swapped whole.

A snapshot is built from the last good rules file and the last known rollout
state; either changing builds a new one completely, then swaps the reference,
so no reader ever sees a torn state (new rules with an old share, or half a file).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from extproc.core.decide import Decider
from extproc.core.errors import RulesError
from extproc.core.loader import load_rules
from extproc.core.model import Rules, percent
from extproc.rollout.effective import apply_state
from extproc.rollout.state import RolloutState
from extproc.rollout.stores.state_store import read_state_file

log = logging.getLogger("extproc.rules")


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything a decision needs, frozen together."""

    decider: Decider  # built from the effective rules (file rules + rollout state)
    rules: Rules  # as loaded from the file
    state: RolloutState | None
    loaded_at: float

    @property
    def version(self) -> str:
        return self.decider.rules.version


@dataclass(frozen=True, slots=True)
class ReloadResult:
    """Outcome of one reload attempt: 'loaded', 'unchanged' or 'failed'."""

    outcome: str
    version: str | None
    error: Exception | None = None


class RulesHolder:
    """Holds the current snapshot; reloads build fully, then swap one reference.

    A rules file that fails validation, or a state file that cannot be read,
    keeps the last good input serving; the failure is logged and returned so
    the caller can count it. Rules and state may arrive from different threads
    (a rules reload runs in a worker thread while a watcher pushes a state): each
    change and the swap it causes happen under one lock, so the last swap always
    has the latest of both.
    """

    def __init__(self, path: Path, state_path: Path | None = None) -> None:
        self.path = path
        self.state_path = state_path
        self.current: Snapshot | None = None
        self.last_error: Exception | None = None
        self._rules: Rules | None = None
        self._state: RolloutState | None = None
        self._lock = threading.Lock()

    def reload(self) -> ReloadResult:
        """Re-read the rules file."""
        try:
            rules = load_rules(self.path)
        except RulesError as exc:
            self.last_error = exc
            serving = self.current.version if self.current else None
            log.error(
                "rules rejected, %s: %s",
                f"still serving {serving}" if serving else "not serving yet",
                exc,
            )
            return ReloadResult("failed", None, exc)
        self.last_error = None
        if self._rules is not None and self._rules.version == rules.version:
            return ReloadResult("unchanged", rules.version)
        with self._lock:
            old = self._rules.version if self._rules else None
            self._rules = rules
            self._swap()
        log.info(
            "rules loaded: %s version %s (was %s), file share %s, %d rules",
            self.path,
            rules.version,
            old,
            percent(rules.share),
            len(rules.rules),
        )
        return ReloadResult("loaded", rules.version)

    def reload_state(self) -> ReloadResult:
        """Re-read the rollout state; an unreadable or missing file keeps the last known."""
        if self.state_path is None:
            return ReloadResult("unchanged", None)
        try:
            state = read_state_file(self.state_path)
        except (OSError, ValueError) as exc:
            return self.state_failed(exc)
        return self.set_state(state)

    def state_failed(self, exc: Exception) -> ReloadResult:
        """The state source failed: keep serving the last known state; log and say so."""
        log.error(
            "rollout state unreadable, keeping revision %s: %s",
            self._state.revision if self._state else None,
            exc,
        )
        return ReloadResult("failed", None, exc)

    def set_state(self, state: RolloutState | None) -> ReloadResult:
        """Serve ``state`` (read from a file or pushed by a watcher); None or an equal state
        changes nothing."""
        with self._lock:
            if state is None or (self._state is not None and state == self._state):
                return ReloadResult("unchanged", None)
            self._state = state
            self._swap()
        log.info(
            "rollout state: %s revision %d, %s at %s",
            state.rollout,
            state.revision,
            state.phase.value,
            percent(state.share),
        )
        return ReloadResult("loaded", str(state.revision))

    def _swap(self) -> None:
        if self._rules is None:
            return  # no rules yet: nothing to serve, whatever the state says
        if self._state is not None and self._state.rollout != self._rules.name:
            log.warning(
                "rollout state is for %r, rules are %r: state ignored",
                self._state.rollout,
                self._rules.name,
            )
        effective = apply_state(self._rules, self._state)
        self.current = Snapshot(Decider(effective), self._rules, self._state, time.time())
