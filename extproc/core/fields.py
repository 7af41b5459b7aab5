"""Typed readers over YAML nodes: each returns a plain value or raises a located error.

Every reader takes the node and its dotted field path, so an error always reads
``FILE:LINE: field.path: what is wrong and what is allowed``.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import NoReturn

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from extproc.core.bucket import BUCKETS
from extproc.core.errors import RulesError
from extproc.core.yaml_source import line_of

_STR = "tag:yaml.org,2002:str"
_BOOL = "tag:yaml.org,2002:bool"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_HEADER_NAME = re.compile(r"[a-z0-9!#$%&'*+.^_`|~-]+")
_KINDS = {MappingNode: "a mapping", SequenceNode: "a list", ScalarNode: "a scalar"}


class Reader:
    """Reads one file's nodes; ``file`` is the name errors start with."""

    def __init__(self, file: str) -> None:
        self.file = file

    def fail(self, node: Node, path: str, message: str) -> NoReturn:
        raise RulesError(self.file, line_of(node), path or "(root)", message)

    def mapping(
        self, node: Node, path: str, allowed: tuple[str, ...], required: tuple[str, ...] = ()
    ) -> dict[str, Node]:
        """A mapping with only ``allowed`` keys, all ``required`` ones present."""
        if not isinstance(node, MappingNode):
            self.fail(node, path, f"expected a mapping, got {_kind(node)}")
        out: dict[str, Node] = {}
        for key, value in node.value:
            name = key.value if isinstance(key, ScalarNode) else None
            if name not in allowed:
                where = f"{path}.{name}" if path else str(name)
                self.fail(key, where, f"unknown key; allowed: {', '.join(allowed)}")
            out[name] = value
        for name in required:
            if name not in out:
                self.fail(node, path, f"missing required key '{name}'")
        return out

    def sequence(self, node: Node, path: str, *, allow_scalar: bool = False) -> list[Node]:
        """A list; with ``allow_scalar`` a single scalar counts as a list of one."""
        if allow_scalar and isinstance(node, ScalarNode):
            return [node]
        if not isinstance(node, SequenceNode):
            self.fail(node, path, f"expected a list, got {_kind(node)}")
        return list(node.value)

    def string(self, node: Node, path: str, *, pattern: re.Pattern[str] | None = None) -> str:
        """A non-empty string (quoted or plain, not a number/bool), optionally matching."""
        if not isinstance(node, ScalarNode) or node.tag != _STR:
            self.fail(node, path, f"expected a string, got {_kind(node)}")
        if not node.value:
            self.fail(node, path, "must not be empty")
        if pattern is not None and not pattern.fullmatch(node.value):
            self.fail(node, path, f"{node.value!r} does not match {pattern.pattern}")
        return str(node.value)

    def strings(self, node: Node, path: str, *, allow_scalar: bool = False) -> list[str]:
        """A non-empty list of strings without duplicates."""
        items = self.sequence(node, path, allow_scalar=allow_scalar)
        if not items:
            self.fail(node, path, "must not be an empty list")
        seen: set[str] = set()
        out = []
        for i, item in enumerate(items):
            value = self.string(item, f"{path}[{i}]")
            if value in seen:
                self.fail(item, f"{path}[{i}]", f"{value!r} is listed twice")
            seen.add(value)
            out.append(value)
        return out

    def boolean(self, node: Node, path: str) -> bool:
        if not isinstance(node, ScalarNode) or node.tag != _BOOL:
            self.fail(node, path, f"expected true or false, got {_kind(node)}")
        return node.value.lower() in ("true", "yes", "on")

    def integer(self, node: Node, path: str, low: int, high: int) -> int:
        if not isinstance(node, ScalarNode) or node.tag != _INT:
            self.fail(node, path, f"expected an integer, got {_kind(node)}")
        try:
            value = int(node.value.replace("_", ""), 0)
        except ValueError:
            self.fail(node, path, f"{node.value!r} is not a plain integer")
        if not low <= value <= high:
            self.fail(node, path, f"{value} is out of range; allowed {low}..{high}")
        return value

    def header_name(self, node: Node, path: str) -> str:
        """A request header name, lower-cased; the cohort header itself is reserved."""
        name = self.string(node, path).lower()
        if not _HEADER_NAME.fullmatch(name):
            self.fail(node, path, f"{name!r} is not a valid HTTP header name")
        if name == "x-tts-cohort":
            self.fail(node, path, "'x-tts-cohort' is set by the gate and cannot be an input")
        return name

    def share(self, node: Node, path: str) -> int:
        """A share such as ``10%``, ``0.25%`` or ``10``, in buckets (0.01 % steps)."""
        if not isinstance(node, ScalarNode) or node.tag not in (_STR, _INT, _FLOAT):
            self.fail(node, path, f"expected a percentage like '10%', got {_kind(node)}")
        text = node.value.strip()
        if node.tag == _STR:
            if not text.endswith("%"):
                self.fail(node, path, f"{text!r} is not a percentage; write it like '12.5%'")
            text = text[:-1].strip()
        try:
            percent = Decimal(text)
        except InvalidOperation:
            self.fail(node, path, f"{node.value!r} is not a number; write it like '12.5%'")
        if not percent.is_finite() or not Decimal(0) <= percent <= Decimal(100):
            self.fail(node, path, f"{node.value!r} is out of range; allowed 0% to 100%")
        buckets = percent * BUCKETS / 100
        if buckets != buckets.to_integral_value():
            self.fail(node, path, f"{node.value!r} is finer than the 0.01% resolution")
        return int(buckets)


def _kind(node: Node) -> str:
    if isinstance(node, ScalarNode):
        if node.tag == "tag:yaml.org,2002:null":
            return "nothing (null)"
        kind = node.tag.rsplit(":", 1)[-1]
        return f"{kind} {node.value!r}"
    return _KINDS.get(type(node), "something else")
