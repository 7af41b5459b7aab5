"""Read a YAML file into a node tree that remembers lines, refusing unsafe input.

Refused, each with a located ``RulesError``: files over ``MAX_BYTES``, bytes that
are not UTF-8, more than one document, anchors and aliases (the "billion
laughs" alias bomb needs them; rules files never do), non-standard tags and
duplicate mapping keys.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from extproc.core.errors import RulesError

#: Largest rules file accepted; 10,000 listed users fit in a fraction of it.
MAX_BYTES = 1 << 20

FILE = "(file)"
_STANDARD_TAG = "tag:yaml.org,2002:"
_ALLOWED_TAGS = {
    _STANDARD_TAG + t for t in ("str", "int", "float", "bool", "null", "timestamp", "map", "seq")
}


def read_bytes(path: Path, max_bytes: int = MAX_BYTES) -> bytes:
    """The file's bytes, or a ``RulesError`` if it is missing, unreadable or too big."""
    name = str(path)
    try:
        with path.open("rb") as handle:
            data = handle.read(max_bytes + 1)
    except OSError as exc:
        raise RulesError(name, 1, FILE, f"cannot read: {exc.strerror or exc}") from exc
    if len(data) > max_bytes:
        raise RulesError(name, 1, FILE, f"file is larger than the {max_bytes} byte limit")
    return data


def compose(name: str, data: bytes) -> Node:
    """Decode and compose ``data`` into one checked YAML node tree."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise RulesError(name, line, FILE, f"not valid UTF-8 (byte {exc.start})") from exc
    try:
        _refuse_anchors(name, text)
        nodes = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        # Errors found at the end of the stream point past the last line; clamp.
        line = min(mark.line + 1, text.count("\n") or 1) if mark is not None else 1
        raise RulesError(name, line, FILE, f"invalid YAML: {exc.problem or exc}") from exc
    except yaml.YAMLError as exc:
        raise RulesError(name, 1, FILE, f"invalid YAML: {exc}") from exc
    if not nodes:
        raise RulesError(name, 1, FILE, "the file is empty; expected a mapping")
    if len(nodes) > 1:
        line = nodes[1].start_mark.line + 1
        raise RulesError(name, line, FILE, "more than one YAML document; expected one")
    _check_tree(name, nodes[0])
    return nodes[0]


def _refuse_anchors(name: str, text: str) -> None:
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            line = event.start_mark.line + 1 if event.start_mark is not None else 1
            raise RulesError(name, line, FILE, "YAML anchors and aliases (&, *) are not allowed")


def _check_tree(name: str, root: Node) -> None:
    stack = [root]
    while stack:
        node = stack.pop()
        if node.tag not in _ALLOWED_TAGS:
            line = node.start_mark.line + 1
            tag = node.tag.replace(_STANDARD_TAG, "!!", 1)
            raise RulesError(name, line, FILE, f"YAML tag {tag!r} is not allowed")
        if isinstance(node, MappingNode):
            seen: set[str] = set()
            for key, value in node.value:
                if isinstance(key, ScalarNode):
                    if key.value in seen:
                        line = key.start_mark.line + 1
                        raise RulesError(name, line, FILE, f"duplicate key {key.value!r}")
                    seen.add(key.value)
                stack.extend((key, value))
        elif isinstance(node, SequenceNode):
            stack.extend(node.value)


def line_of(node: Node) -> int:
    """1-based line where ``node`` starts."""
    return node.start_mark.line + 1
