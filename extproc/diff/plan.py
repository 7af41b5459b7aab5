"""What one rules snapshot does to each group of a population, asked of the real decider.

Outside the force lists, a decision depends on the key only through its bucket: the
kill switch, the first matching rule and the missing-key policy are functions of the
group's attributes. So the plan asks ``Decider.decide`` twice per group, once with a probe
key that is in no force list and once without a key, and keeps what it answered: a fixed
cohort, or a share the key's bucket is compared with. Users in a force list are not planned
here; the engine decides them one by one with their own id.
"""

from __future__ import annotations

import itertools
import string
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from extproc.core.bucket import salt_prefix
from extproc.core.decide import Decider
from extproc.core.model import Cohort, Reason, Rules
from extproc.diff.population import Group

I64 = npt.NDArray[np.int64]
B = npt.NDArray[np.bool_]
SPLIT = -1  # in ``fixed``: the cohort depends on the bucket


@dataclass(frozen=True, slots=True)
class Plan:
    """Per group (arrays indexed by group): how a user with or without a key is decided."""

    rules: Rules
    prefix: bytes  # salt + ":"
    fixed: I64  # 1 = v2, 0 = v1, SPLIT = bucket < share
    share: I64  # buckets (0 where fixed)
    keyed_rule: tuple[str, ...]  # the rule label a keyed user's decision carries
    unkeyed_v2: B  # the cohort of a user without a usable key
    unkeyed_rule: tuple[str, ...]  # ... whose key is absent
    invalid_rule: tuple[str, ...]  # ... whose key is longer than max_key_bytes
    max_key_bytes: int

    def cohorts(self, group: I64, bucket: I64) -> B:
        """v2? for users of ``group`` whose key has ``bucket`` (negative: no usable key)."""
        fixed = self.fixed[group]
        split = bucket < self.share[group]
        keyed = np.where(fixed == SPLIT, split, fixed == 1)
        result: B = np.where(bucket >= 0, keyed, self.unkeyed_v2[group])
        return result


def probe_key(rules: Sequence[Rules]) -> str:
    """The shortest key (one byte, for any ``max_key_bytes``) that no force list holds."""
    taken = set().union(*(r.force_v1 | r.force_v2 for r in rules))
    for length in itertools.count(1):
        for chars in itertools.product(string.ascii_letters + string.digits, repeat=length):
            if "".join(chars) not in taken:
                return "".join(chars)
    raise AssertionError("unreachable")


def plan(rules: Rules, groups: Sequence[Group], probe: str) -> Plan:
    decider = Decider(rules)
    user_header = rules.identity.user_header
    too_long = "x" * (rules.identity.max_key_bytes + 1)
    fixed, share, keyed_rule, unkeyed_v2, unkeyed_rule, invalid_rule = [], [], [], [], [], []
    for group in groups:
        headers = group.request_headers(rules.attributes.region, rules.attributes.device)
        for name in (user_header, *rules.identity.fallback_headers):
            headers.pop(name, None)
        without = decider.decide(headers)
        with_key = decider.decide({**headers, user_header: probe})
        assert with_key.rule not in ("force.v1", "force.v2"), "the probe is in a force list"
        if with_key.reason is Reason.SPLIT:
            assert with_key.share is not None
            fixed.append(SPLIT)
            share.append(with_key.share)
        else:
            fixed.append(1 if with_key.cohort is Cohort.V2 else 0)
            share.append(0)
        keyed_rule.append(with_key.rule)
        unkeyed_v2.append(without.cohort is Cohort.V2)
        unkeyed_rule.append(without.rule)
        invalid = decider.decide({**headers, user_header: too_long})
        assert invalid.cohort is without.cohort, "an invalid key is decided as a missing one"
        invalid_rule.append(invalid.rule)
    return Plan(
        rules=rules,
        prefix=salt_prefix(rules.salt),
        fixed=np.array(fixed, dtype=np.int64),
        share=np.array(share, dtype=np.int64),
        keyed_rule=tuple(keyed_rule),
        unkeyed_v2=np.array(unkeyed_v2, dtype=np.bool_),
        unkeyed_rule=tuple(unkeyed_rule),
        invalid_rule=tuple(invalid_rule),
        max_key_bytes=rules.identity.max_key_bytes,
    )
