"""The probe corpus: strict YAML in, a frozen tuple of :class:`Probe` out.

```yaml
probes:
  - {id: short-hello, kind: short, text: "Hello, how can I help you today?"}
```
``id`` is unique (it names the text in the paired results and the metrics), ``kind`` one of
KINDS, ``text`` non-empty and at most MAX_TEXT characters. Errors say ``file:line: path:
what``, like the rules and the policy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from extproc.core.fields import Reader
from extproc.core.yaml_source import compose, read_bytes

DEFAULT_CORPUS = Path(__file__).with_name("corpus.yaml")
KINDS = ("short", "long", "numbers", "mixed")
MAX_TEXT = 1000
_ID = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")


@dataclass(frozen=True, slots=True)
class Probe:
    id: str
    kind: str
    text: str


def load_corpus(path: str | Path = DEFAULT_CORPUS) -> tuple[Probe, ...]:
    path = Path(path)
    return parse_corpus(str(path), read_bytes(path))


def parse_corpus(name: str, data: bytes) -> tuple[Probe, ...]:
    r = Reader(name)
    top = r.mapping(compose(name, data), "", ("probes",), ("probes",))
    items = r.sequence(top["probes"], "probes")
    if not items:
        r.fail(top["probes"], "probes", "must not be an empty list")
    probes: list[Probe] = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        path = f"probes[{i}]"
        m = r.mapping(item, path, ("id", "kind", "text"), ("id", "kind", "text"))
        probe_id = r.string(m["id"], f"{path}.id", pattern=_ID)
        if probe_id in seen:
            r.fail(m["id"], f"{path}.id", f"duplicate probe id {probe_id!r}")
        seen.add(probe_id)
        kind = r.string(m["kind"], f"{path}.kind")
        if kind not in KINDS:
            r.fail(
                m["kind"], f"{path}.kind", f"{kind!r} is not a kind; allowed: {', '.join(KINDS)}"
            )
        text = r.string(m["text"], f"{path}.text")
        if len(text) > MAX_TEXT:
            r.fail(m["text"], f"{path}.text", f"longer than {MAX_TEXT} characters")
        probes.append(Probe(probe_id, kind, text))
    return tuple(probes)
