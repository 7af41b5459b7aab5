"""Where the rollout state lives: the interface, and the file store (one host).

Writes are compare-and-swap on ``revision``: a writer says which revision it
read, and the write is refused if another writer got there first, so two
controllers can never both advance the rollout. Each accepted write appends
its transition to the audit log in the same critical section. Sidecars read
the state file (polling its path, like the rules) and never write it.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from extproc.rollout.clock import ClockOrigin
from extproc.rollout.state import Change, RolloutState


class Conflict(RuntimeError):
    """The state changed since it was read; re-read and decide again."""


class StateStore(Protocol):
    def read(self) -> RolloutState | None: ...
    def create(self, state: RolloutState) -> bool: ...
    def write(self, change: Change, expected_revision: int) -> None: ...
    def audit(self, limit: int = 20) -> list[dict[str, Any]]: ...
    def clock_origin(self, proposed: ClockOrigin | None) -> ClockOrigin | None:
        """The rollout's scaled-clock origin: the stored one if there is one, else
        ``proposed`` stored now (None: only read). ValueError if the stored one is bad."""
        ...


def read_state_file(path: Path) -> RolloutState | None:
    """The state in ``path``, None if absent; ValueError if it is not a valid state."""
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        return None
    try:
        return RolloutState.from_json(json.loads(text))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: not a rollout state: {exc}") from exc


class FileStateStore:
    """State in ``path`` (JSON, replaced atomically), audit log in ``path.audit.jsonl``,
    scaled-clock origin (if any) in ``path.clock.json``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.audit_path = self.path.with_name(self.path.name + ".audit.jsonl")
        self._lock_path = self.path.with_name(self.path.name + ".lock")
        self.clock_path = self.path.with_name(self.path.name + ".clock.json")
        self.path.parent.mkdir(parents=True, exist_ok=True)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self._lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def read(self) -> RolloutState | None:
        return read_state_file(self.path)

    def create(self, state: RolloutState) -> bool:
        """Write ``state`` only if no state exists yet; True if it was written."""
        with self._locked():
            if self.path.exists():
                return False
            self._replace(state)
            return True

    def write(self, change: Change, expected_revision: int) -> None:
        state, transition = change
        with self._locked():
            current = self.read()
            revision = current.revision if current is not None else 0
            if revision != expected_revision:
                raise Conflict(
                    f"state is at revision {revision}, not {expected_revision}: re-read it"
                )
            with open(self.audit_path, "a", encoding="utf-8") as audit:
                audit.write(json.dumps(transition.to_json(), separators=(",", ":")) + "\n")
                audit.flush()
                os.fsync(audit.fileno())
            self._replace(state)

    def _replace(self, state: RolloutState) -> None:
        fd, tmp = tempfile.mkstemp(prefix=".state-", dir=self.path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(state.to_json(), out, indent=1)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.path)

    def clock_origin(self, proposed: ClockOrigin | None) -> ClockOrigin | None:
        with self._locked():
            try:
                text = self.clock_path.read_text("utf-8")
            except FileNotFoundError:
                if proposed is not None:
                    self.clock_path.write_text(json.dumps(proposed.to_json()), "utf-8")
                return proposed
            try:
                return ClockOrigin.from_json(json.loads(text))
            except ValueError as exc:
                raise ValueError(f"{self.clock_path}: {exc}") from None

    def audit(self, limit: int = 20) -> list[dict[str, Any]]:
        try:
            lines = self.audit_path.read_text("utf-8").splitlines()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in lines[-limit:] if line.strip()]
