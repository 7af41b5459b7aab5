"""Cohort assignment: a pure function of (rules, request headers).

Precedence, first match wins (DESIGN.md):
  1. kill switch                          -> v1 (disabled)
  2. force lists on the key (v2 testers, v1 protected users)
  3. ordered rules on region / device / headers: force a cohort or use a share
  4. the default share
A decision that needs a bucket but has no usable key follows the missing-key
policy (reason ``default``). Nothing here is stored per user.
"""

from __future__ import annotations

from collections.abc import Mapping

from extproc.core.bucket import bucket_of, salt_prefix
from extproc.core.model import Cohort, Decision, Reason, Rule, Rules

#: Bound on memoised (region, device, headers) -> rule entries per snapshot.
_MEMO_LIMIT = 4096
_NO_RULE = object()


class Decider:
    """Decisions under one frozen ``Rules``; cheap to build, safe to share.

    The only state is a bounded memo of which rule an attribute tuple matches,
    a pure function of the rules, so the result never depends on history. What
    every decision reads from the rules is copied into slots once, at build time.
    """

    __slots__ = (
        "_device_header",
        "_force_v1",
        "_force_v2",
        "_key_headers",
        "_max_key_bytes",
        "_memo",
        "_prefix",
        "_region_header",
        "_rule_headers",
        "_version",
        "header_names",
        "rules",
    )

    def __init__(self, rules: Rules) -> None:
        self.rules = rules
        self._prefix = salt_prefix(rules.salt)
        self._version = rules.version
        self._force_v1, self._force_v2 = rules.force_v1, rules.force_v2
        identity = rules.identity
        self._key_headers = (identity.user_header, *identity.fallback_headers)
        self._max_key_bytes = identity.max_key_bytes
        self._region_header = rules.attributes.region
        self._device_header = rules.attributes.device
        self._rule_headers = tuple(
            sorted({h.name for rule in rules.rules for h in rule.when.headers})
        )
        self._memo: dict[tuple[object, ...], object] = {}
        #: Every request header a decision may read; the edge extracts only these.
        self.header_names = rules.header_names

    def decide(self, headers: Mapping[str, str]) -> Decision:
        """Decide the cohort of one request; ``headers`` maps lower-case names to values."""
        version = self._version
        if self.rules.kill_switch:
            return Decision(Cohort.V1, Reason.DISABLED, self.rules.kill_rule, -1, None, version)
        key, source = self._key(headers)
        if key is not None:
            if key in self._force_v2:
                return Decision(
                    Cohort.V2, Reason.TARGETING_MATCH, "force.v2", -1, None, version, source
                )
            if key in self._force_v1:
                return Decision(
                    Cohort.V1, Reason.TARGETING_MATCH, "force.v1", -1, None, version, source
                )
        rule = self._first_rule(headers)
        share: int | None
        if rule is None:
            share, label = self.rules.share, "default"
        elif rule.cohort is not None:
            return Decision(rule.cohort, Reason.TARGETING_MATCH, rule.label, -1, None, version)
        else:
            share, label = rule.share, rule.label
        assert share is not None
        if key is None:
            policy = self.rules.identity.when_missing
            return Decision(policy, Reason.DEFAULT, source or "missing_key", -1, None, version)
        bucket = bucket_of(self._prefix, key.encode("utf-8", "surrogateescape"))
        cohort = Cohort.V2 if bucket < share else Cohort.V1
        return Decision(cohort, Reason.SPLIT, label, bucket, share, version, source)

    def _key(self, headers: Mapping[str, str]) -> tuple[str | None, str | None]:
        """The sticky key and the header it came from; ``(None, why)`` when unusable."""
        limit = self._max_key_bytes
        too_long = False
        for name in self._key_headers:
            value = headers.get(name)
            if not value:
                continue
            # The character count is a cheap pre-check; only long values are encoded.
            if len(value) > limit and len(value.encode("utf-8", "surrogateescape")) > limit:
                too_long = True
                continue
            return value, name
        return None, ("invalid_key" if too_long else None)

    def _first_rule(self, headers: Mapping[str, str]) -> Rule | None:
        rules = self.rules.rules
        if not rules:
            return None
        region = headers.get(self._region_header)
        device = headers.get(self._device_header)
        memo_key = (region, device, *map(headers.get, self._rule_headers))
        found = self._memo.get(memo_key)
        if found is None:
            found = _match(rules, region, device, headers) or _NO_RULE
            if len(self._memo) >= _MEMO_LIMIT:
                self._memo.clear()
            self._memo[memo_key] = found
        return None if found is _NO_RULE else found  # type: ignore[return-value]


def _match(
    rules: tuple[Rule, ...], region: str | None, device: str | None, headers: Mapping[str, str]
) -> Rule | None:
    region_l = region.lower() if region is not None else None
    device_l = device.lower() if device is not None else None
    for rule in rules:
        when = rule.when
        if when.regions is not None and region_l not in when.regions:
            continue
        if when.devices is not None and (
            device_l is None or not any(g.fullmatch(device_l) for g in when.devices)
        ):
            continue
        if not all(h.matches(headers.get(h.name)) for h in when.headers):
            continue
        return rule
    return None


def decide(rules: Rules, headers: Mapping[str, str]) -> Decision:
    """One-off decision; hot paths keep a ``Decider`` per snapshot instead."""
    return Decider(rules).decide(headers)
