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


def buckets(plan_: Plan, chunk: Chunk) -> np.ndarray:
    """The bucket of every user of ``chunk`` under ``plan_``'s salt; -1 = no usable key."""
    out = np.full(chunk.size, -1, dtype=np.int64)
    for block in chunk.blocks:
        if block.keys.shape[1] <= plan_.max_key_bytes:
            out[block.rows] = buckets_block(plan_.prefix, block.keys)
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
    code = ((chunk.group * 2 + (b_old >= 0)) * 2 + (b_new >= 0)) * 4 + v2_old * 2 + v2_new
    tally = np.bincount(code[keep], minlength=len(old.fixed) * 16)
    for value in np.flatnonzero(tally):
        g, k_old, k_new, o, n = (
            value // 16,
            value // 8 % 2,
            value // 4 % 2,
            value // 2 % 2,
            value % 2,
        )
        cell = Cell(
            int(g),
            (old.keyed_rule if k_old else old.unkeyed_rule)[g],
            (new.keyed_rule if k_new else new.unkeyed_rule)[g],
            bool(o),
            bool(n),
        )
        counts[cell] += int(tally[value])
    for direction, mask in ((UP, ~v2_old & v2_new), (DOWN, v2_old & ~v2_new)):
        need = sample - len(picked[direction])
        if need > 0:
            rows = np.flatnonzero(mask & keep)[:need]
            picked[direction].extend(int(r) + chunk.start for r in rows)


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
