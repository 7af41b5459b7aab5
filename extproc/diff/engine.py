"""The dry run: every user of a population decided under OLD and under NEW, then counted.

Pure (no I/O, no clock). Users in no force list are decided in bulk: the group's plan
(``plan.py``, asked of the real decider) and the key's bucket (``xxh64.py``, bit-exact with
the core's). Users in a force list of either file are decided one by one by the real
decider with their own id. The result counts users per (group, old rule, new rule, old
cohort, new cohort) cell and keeps a few moved users' ids, keyed-hashed, per direction.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from extproc.core.decide import decide
from extproc.core.model import Cohort, Rules
from extproc.diff.plan import Plan, plan, probe_key
from extproc.diff.population import Chunk, Group, Population
from extproc.diff.xxh64 import buckets_block

UP, DOWN = "v1->v2", "v2->v1"


@dataclass(frozen=True, slots=True)
class Cell:
    """Users of one group whose decisions carried these rules and cohorts."""

    group: int
    old_rule: str
    new_rule: str
    old_v2: bool
    new_v2: bool


@dataclass(frozen=True, slots=True)
class Diff:
    old: Rules
    new: Rules
    users: int
    groups: tuple[Group, ...]
    cells: dict[Cell, int]
    samples: dict[str, tuple[str, ...]] = field(default_factory=dict)  # direction -> hashed ids

    @property
    def salt_changed(self) -> bool:
        return self.old.salt != self.new.salt

    def moved(self, direction: str) -> int:
        want = (False, True) if direction == UP else (True, False)
        return sum(n for c, n in self.cells.items() if (c.old_v2, c.new_v2) == want)


def run_diff(
    old: Rules,
    new: Rules,
    population: Population,
    hash_id: Callable[[str], str],
    sample: int = 10,
) -> Diff:
    """Decide ``population`` under both rules; ``hash_id`` hides the sampled ids."""
    probe = probe_key([old, new])
    plans = plan(old, population.groups, probe), plan(new, population.groups, probe)
    forced = old.force_v1 | old.force_v2 | new.force_v1 | new.force_v2
    special = sorted(population.locate(set(forced)).values())
    counts: Counter[Cell] = Counter()
    picked: dict[str, list[int]] = {UP: [], DOWN: []}
    for chunk in population.chunks():
        _tally_chunk(chunk, plans, special, counts, picked, sample)
    for index in special:
        cell = _decide_one(old, new, population, index)
        counts[cell] += 1
        direction = _direction(cell.old_v2, cell.new_v2)
        if direction and len(picked[direction]) < sample:
            picked[direction].append(index)
    samples = {
        d: tuple(hash_id(population.user(i)[0]) for i in sorted(indices)[:sample])
        for d, indices in picked.items()
    }
    return Diff(old, new, population.size, tuple(population.groups), dict(counts), samples)


MISSING, INVALID = -1, -2  # "buckets" of users without a usable key


def buckets(plan_: Plan, chunk: Chunk) -> np.ndarray:
    """The bucket of every user of ``chunk`` under ``plan_``'s salt, or MISSING (no key) or
    INVALID (a key longer than the rules' max_key_bytes)."""
    out = np.full(chunk.size, MISSING, dtype=np.int64)
    limit = plan_.max_key_bytes
    for block in chunk.blocks:
        # The sidecar (Decider._key) refuses a key only when both its character count and
        # its byte count exceed the limit, i.e. it limits characters; do exactly the same.
        chars = block.keys.shape[1] if block.chars is None else block.chars
        fits = np.broadcast_to(np.asarray(chars) <= limit, block.rows.shape)
        out[block.rows] = INVALID
        if fits.any():
            out[block.rows[fits]] = buckets_block(plan_.prefix, block.keys[fits])
    return out


def _tally_chunk(
    chunk: Chunk,
    plans: tuple[Plan, Plan],
    special: list[int],
    counts: Counter[Cell],
    picked: dict[str, list[int]],
    sample: int,
) -> None:
    old, new = plans
    b_old = buckets(old, chunk)
    same_hash = (old.prefix, old.max_key_bytes) == (new.prefix, new.max_key_bytes)
    b_new = b_old if same_hash else buckets(new, chunk)
    v2_old, v2_new = old.cohorts(chunk.group, b_old), new.cohorts(chunk.group, b_new)
    keep = np.ones(chunk.size, dtype=np.bool_)
    lo, hi = np.searchsorted(special, [chunk.start, chunk.start + chunk.size])
    keep[np.asarray(special[lo:hi], dtype=np.int64) - chunk.start] = False
    # One bincount over (group, key state under OLD, under NEW, cohort under OLD, under NEW).
    code = ((chunk.group * 3 + _state(b_old)) * 3 + _state(b_new)) * 4 + v2_old * 2 + v2_new
    tally = np.bincount(code[keep], minlength=len(old.fixed) * 36)
    for value in map(int, np.flatnonzero(tally)):
        g, s_old, s_new = value // 36, value // 12 % 3, value // 4 % 3
        cell = Cell(
            int(g),
            _rule(old, s_old, g),
            _rule(new, s_new, g),
            bool(value // 2 % 2),
            bool(value % 2),
        )
        counts[cell] += int(tally[value])
    for direction, mask in ((UP, ~v2_old & v2_new), (DOWN, v2_old & ~v2_new)):
        need = sample - len(picked[direction])
        if need > 0:
            rows = np.flatnonzero(mask & keep)[:need]
            picked[direction].extend(int(r) + chunk.start for r in rows)


def _state(bucket: np.ndarray) -> np.ndarray:
    """0 keyed, 1 missing, 2 invalid."""
    return np.where(bucket >= 0, 0, np.where(bucket == MISSING, 1, 2))


def _rule(plan_: Plan, state: int, group: int) -> str:
    return (plan_.keyed_rule, plan_.unkeyed_rule, plan_.invalid_rule)[state][group]


def _decide_one(old: Rules, new: Rules, population: Population, index: int) -> Cell:
    user_id, g = population.user(index)
    group = population.groups[g]
    cohorts, labels = [], []
    for rules in (old, new):
        headers = group.request_headers(rules.attributes.region, rules.attributes.device)
        if user_id:
            headers[rules.identity.user_header] = user_id
        d = decide(rules, headers)
        cohorts.append(d.cohort is Cohort.V2)
        labels.append(d.rule)
    return Cell(g, labels[0], labels[1], cohorts[0], cohorts[1])


def _direction(old_v2: bool, new_v2: bool) -> str | None:
    if old_v2 == new_v2:
        return None
    return UP if new_v2 else DOWN
