"""The one way in for rules: read, parse strictly, apply defaults, validate, freeze.

``load_rules(path)`` returns a frozen ``Rules`` or raises ``RulesError`` located
at ``FILE:LINE: field.path``. Unknown keys are errors everywhere. The rules
version is a hash of the file's bytes, so equal files give equal versions.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
from pathlib import Path

from yaml.nodes import Node

from extproc.core.fields import Reader
from extproc.core.model import (
    Attributes,
    Cohort,
    HeaderMatch,
    Identity,
    Matcher,
    Rule,
    Rules,
)
from extproc.core.yaml_source import compose, read_bytes

_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
_COHORTS = {c.value: c for c in Cohort}


def load_rules(path: str | Path) -> Rules:
    """Load and validate one rules file (see docs/rules.md for the schema)."""
    path = Path(path)
    data = read_bytes(path)
    return parse_rules(str(path), data)


def parse_rules(name: str, data: bytes) -> Rules:
    """Validate rules given as bytes; ``name`` is the file name errors start with."""
    root = compose(name, data)
    r = Reader(name)
    top = r.mapping(
        root, "", ("rollout", "identity", "attributes", "force", "rules"), required=("rollout",)
    )
    rollout = r.mapping(
        top["rollout"],
        "rollout",
        ("name", "salt", "share", "kill_switch"),
        ("name", "salt", "share"),
    )
    force_v2, force_v1 = _force(r, top.get("force"))
    return Rules(
        name=r.string(rollout["name"], "rollout.name", pattern=_NAME),
        salt=r.string(rollout["salt"], "rollout.salt"),
        share=r.share(rollout["share"], "rollout.share"),
        kill_switch=_optional(r.boolean, rollout.get("kill_switch"), "rollout.kill_switch", False),
        version=hashlib.sha256(data).hexdigest()[:12],
        source=name,
        identity=_identity(r, top.get("identity")),
        attributes=_attributes(r, top.get("attributes")),
        force_v2=force_v2,
        force_v1=force_v1,
        rules=_rules(r, top.get("rules")),
    )


def _optional(read, node: Node | None, path: str, default):  # type: ignore[no-untyped-def]
    return default if node is None else read(node, path)


def _cohort(r: Reader, node: Node, path: str) -> Cohort:
    value = r.string(node, path)
    if value not in _COHORTS:
        r.fail(node, path, f"{value!r} is not a cohort; allowed: v1, v2")
    return _COHORTS[value]


def _identity(r: Reader, node: Node | None) -> Identity:
    if node is None:
        return Identity()
    keys = ("user_header", "fallback_headers", "when_missing", "max_key_bytes")
    m = r.mapping(node, "identity", keys)
    fallbacks: tuple[str, ...] = ()
    if "fallback_headers" in m:
        items = r.sequence(m["fallback_headers"], "identity.fallback_headers")
        fallbacks = tuple(
            r.header_name(n, f"identity.fallback_headers[{i}]") for i, n in enumerate(items)
        )
    default = Identity()
    return Identity(
        user_header=_optional(
            r.header_name, m.get("user_header"), "identity.user_header", default.user_header
        ),
        fallback_headers=fallbacks,
        when_missing=_optional(
            lambda n, p: _cohort(r, n, p), m.get("when_missing"), "identity.when_missing", Cohort.V1
        ),
        max_key_bytes=_optional(
            lambda n, p: r.integer(n, p, 1, 8192),
            m.get("max_key_bytes"),
            "identity.max_key_bytes",
            default.max_key_bytes,
        ),
    )


def _attributes(r: Reader, node: Node | None) -> Attributes:
    if node is None:
        return Attributes()
    m = r.mapping(node, "attributes", ("region", "device"))
    default = Attributes()
    return Attributes(
        region=_optional(r.header_name, m.get("region"), "attributes.region", default.region),
        device=_optional(r.header_name, m.get("device"), "attributes.device", default.device),
    )


def _force(r: Reader, node: Node | None) -> tuple[frozenset[str], frozenset[str]]:
    if node is None:
        return frozenset(), frozenset()
    m = r.mapping(node, "force", ("v2", "v1"))
    v2 = r.strings(m["v2"], "force.v2") if "v2" in m else []
    v1 = r.strings(m["v1"], "force.v1") if "v1" in m else []
    both = set(v2) & set(v1)
    if both:
        items = r.sequence(m["v1"], "force.v1")
        i = v1.index(sorted(both, key=v1.index)[0])
        r.fail(items[i], f"force.v1[{i}]", f"{v1[i]!r} is also in force.v2; a user is in one list")
    return frozenset(v2), frozenset(v1)


def _rules(r: Reader, node: Node | None) -> tuple[Rule, ...]:
    if node is None:
        return ()
    out: list[Rule] = []
    names: set[str] = set()
    for i, item in enumerate(r.sequence(node, "rules")):
        path = f"rules[{i}]"
        m = r.mapping(item, path, ("name", "when", "cohort", "share"), ("name", "when"))
        name = r.string(m["name"], f"{path}.name", pattern=_NAME)
        if name in names:
            r.fail(m["name"], f"{path}.name", f"duplicate rule name {name!r}")
        names.add(name)
        if ("cohort" in m) == ("share" in m):
            r.fail(item, path, "needs exactly one of 'cohort' (force) or 'share' (own split)")
        out.append(
            Rule(
                name=name,
                line=item.start_mark.line + 1,
                when=_matcher(r, m["when"], f"{path}.when"),
                cohort=_cohort(r, m["cohort"], f"{path}.cohort") if "cohort" in m else None,
                share=r.share(m["share"], f"{path}.share") if "share" in m else None,
            )
        )
    return tuple(out)


def _matcher(r: Reader, node: Node, path: str) -> Matcher:
    m = r.mapping(node, path, ("region", "device", "headers"))
    if not m:
        r.fail(node, path, "an empty matcher would match every request; name a condition")
    regions = None
    if "region" in m:
        regions = frozenset(
            v.lower() for v in r.strings(m["region"], f"{path}.region", allow_scalar=True)
        )
    devices = None
    if "device" in m:
        items = r.sequence(m["device"], f"{path}.device", allow_scalar=True)
        if not items:
            r.fail(m["device"], f"{path}.device", "must not be an empty list")
        devices = tuple(_glob(r, n, f"{path}.device[{i}]") for i, n in enumerate(items))
    headers: tuple[HeaderMatch, ...] = ()
    if "headers" in m:
        headers = _headers(r, m["headers"], f"{path}.headers")
    return Matcher(regions=regions, devices=devices, headers=headers)


def _glob(r: Reader, node: Node, path: str) -> re.Pattern[str]:
    glob = r.string(node, path).lower()
    depth = 0
    for ch in glob:
        depth = 1 if ch == "[" else 0 if ch == "]" else depth
    if depth:
        r.fail(node, path, f"glob {glob!r} has an unclosed '['")
    return re.compile(fnmatch.translate(glob))


def _headers(r: Reader, node: Node, path: str) -> tuple[HeaderMatch, ...]:
    m = r.mapping(node, path, tuple(k.value for k, _ in getattr(node, "value", [])))
    if not m:
        r.fail(node, path, "an empty header matcher would match every request")
    out = []
    for key_node, value in node.value:  # type: ignore[attr-defined]
        name = r.header_name(key_node, f"{path}.{key_node.value}")
        where = f"{path}.{name}"
        if value.tag.endswith(":map"):
            spec = r.mapping(value, where, ("regex",), ("regex",))
            source = r.string(spec["regex"], f"{where}.regex")
            try:
                pattern = re.compile(source)
            except re.error as exc:
                r.fail(spec["regex"], f"{where}.regex", f"invalid regular expression: {exc}")
            out.append(HeaderMatch(name, pattern=pattern))
        else:
            values = r.strings(value, where, allow_scalar=True)
            out.append(HeaderMatch(name, values=frozenset(values)))
    return tuple(out)
