"""docs/notifications.md tells the truth: its policy example parses, its signature snippet
verifies what the sender signs, its Alertmanager routing example passes ``amtool``, and its
metric table names exactly the metrics declared."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path
from typing import Any

from extproc.rollout.notify import metrics, signing
from extproc.rollout.policy import parse_policy
from tests.support.tools import require_tool

DOC = Path(__file__).resolve().parents[3] / "docs" / "notifications.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)


def test_the_policy_example_parses() -> None:
    example = next(b for b in blocks("yaml") if b.startswith("policy:"))
    example = example.replace("  # ... step, guards, freeze as before ...\n", "")
    policy = parse_policy("docs.yaml", example.encode())
    assert [s.type for s in policy.notify] == ["webhook", "slack", "alertmanager"]


def test_the_verification_snippet_accepts_a_signed_body_and_nothing_else() -> None:
    (snippet,) = blocks("python")
    namespace: dict[str, Any] = {}
    exec(snippet, namespace)  # the documented receiver code, as a reader would paste it
    verify = namespace["verify"]
    key, body = b"shared-secret", b'{"kind":"rollback"}'
    header = signing.sign(key, int(time.time()), body)
    assert verify(key, header, body)
    assert not verify(key, header, body + b"x")
    assert not verify(key, signing.sign(key, int(time.time()) - 600, body), body)


def test_the_routing_example_is_a_valid_alertmanager_config(tmp_path: Path) -> None:
    amtool = require_tool("amtool", "prometheus-alertmanager")
    routing = next(b for b in blocks("yaml") if b.startswith("route:"))
    config = tmp_path / "alertmanager.yml"
    config.write_text(routing)
    result = subprocess.run(
        [amtool, "check-config", str(config)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_metrics_table_names_every_declared_metric() -> None:
    documented = set(re.findall(r"^\| `(tts_canary_[a-z_]+)`", DOC.read_text(), re.M))
    assert documented == set(metrics.NAMES)
    exposed = {m.name for m in metrics.NotifyMetrics().registry.collect()}
    assert {n.removesuffix("_total") for n in metrics.NAMES} == exposed
