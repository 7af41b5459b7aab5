"""The file state store: create once, compare-and-swap writes, one audit line per write."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from extproc.core.bucket import BUCKETS
from extproc.rollout import state as sm
from extproc.rollout.policy import Policy
from extproc.rollout.state import RolloutState
from extproc.rollout.stores.state_store import Conflict, FileStateStore, read_state_file

POLICY = Policy(
    "r", initial_share=BUCKETS // 10, step=BUCKETS // 10, step_interval=60.0, rollback_share=0
)


def test_a_missing_state_reads_as_none(tmp_path: Path) -> None:
    store = FileStateStore(tmp_path / "state.json")
    assert store.read() is None and store.audit() == []


def test_create_writes_only_the_first_time(tmp_path: Path) -> None:
    store = FileStateStore(tmp_path / "state.json")
    assert store.create(RolloutState("r"))
    assert not store.create(RolloutState("other"))
    assert store.read() == RolloutState("r")


def test_write_replaces_the_state_and_appends_the_transition(tmp_path: Path) -> None:
    store = FileStateStore(tmp_path / "state.json")
    store.create(RolloutState("r"))
    change = sm.start(RolloutState("r"), POLICY, 100.0, "alice")
    store.write(change, expected_revision=0)
    assert store.read() == change[0]
    (entry,) = store.audit()
    assert entry == change[1].to_json()
    assert (entry["from_phase"], entry["to_phase"], entry["actor"]) == (
        "pending",
        "ramping",
        "alice",
    )


def test_a_write_from_a_stale_revision_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    store = FileStateStore(tmp_path / "state.json")
    store.create(RolloutState("r"))
    pending = RolloutState("r")
    store.write(sm.start(pending, POLICY, 100.0, "a"), expected_revision=0)
    before = (store.path.read_bytes(), store.audit_path.read_bytes())
    with pytest.raises(Conflict, match="revision 1, not 0"):
        store.write(sm.start(pending, POLICY, 101.0, "b"), expected_revision=0)
    assert (store.path.read_bytes(), store.audit_path.read_bytes()) == before


def test_audit_returns_the_last_entries_in_order(tmp_path: Path) -> None:
    store = FileStateStore(tmp_path / "state.json")
    store.create(RolloutState("r"))
    steps = [
        lambda s: sm.start(s, POLICY, 1.0, "op"),
        lambda s: sm.pause(s, 2.0, "op"),
        lambda s: sm.resume(s, POLICY, 3.0, "op"),
        lambda s: sm.pause(s, 4.0, "op"),
        lambda s: sm.resume(s, POLICY, 5.0, "op"),
    ]
    for step in steps:
        current = store.read()
        assert current is not None
        store.write(step(current), current.revision)
    assert [e["revision"] for e in store.audit(limit=3)] == [3, 4, 5]
    lines = store.audit_path.read_text().splitlines()
    assert [json.loads(line)["revision"] for line in lines] == [1, 2, 3, 4, 5]


def test_a_state_file_that_is_not_a_state_is_a_value_error(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text('{"rollout": "r", "phase": "exploded"}')
    with pytest.raises(ValueError, match="not a rollout state"):
        read_state_file(path)
