"""The rules pipeline: one fixture per failure mode, each with its exact message."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from extproc.core.bucket import BUCKETS
from extproc.core.errors import RulesError
from extproc.core.loader import load_rules, parse_rules
from extproc.core.model import Cohort
from extproc.core.yaml_source import MAX_BYTES

ROOT = Path(__file__).resolve().parents[3]
INVALID = sorted((ROOT / "tests/fixtures/rules_invalid").glob("*.yaml"))
EXPECT = re.compile(rb"^# expect: (.*)$", re.MULTILINE)


def expected_message(path: Path) -> str:
    match = EXPECT.search(path.read_bytes())
    assert match, f"{path.name} has no '# expect:' line"
    return f"{path}:{match.group(1).decode()}"


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_each_invalid_fixture_has_its_own_exact_error(path: Path) -> None:
    with pytest.raises(RulesError) as info:
        load_rules(path)
    assert str(info.value) == expected_message(path)


def test_invalid_fixtures_cover_every_failure_mode_once() -> None:
    messages = [expected_message(p).split(":", 2)[2] for p in INVALID]
    assert len(INVALID) >= 25
    assert len(set(messages)) == len(messages), "two fixtures test the same message"


def test_example_rules_load_with_documented_values() -> None:
    rules = load_rules(ROOT / "examples/rules.yaml")
    assert rules.name == "gpt-sovits-v2"
    assert rules.share == BUCKETS // 10
    assert rules.identity.user_header == "x-user-id"
    assert rules.identity.fallback_headers == ("x-device-id",)
    assert rules.force_v2 == {"qa-001", "qa-002"} and rules.force_v1 == {"vip-42"}
    assert [r.name for r in rules.rules] == ["eu-consent-pending", "ios-first"]
    assert rules.rules[0].cohort is Cohort.V1 and rules.rules[1].share == BUCKETS // 5


def test_defaults_apply_when_sections_are_omitted() -> None:
    rules = parse_rules("min.yaml", b"rollout: {name: r, salt: s, share: 0.01%}\n")
    assert rules.share == 1
    assert rules.identity.user_header == "x-user-id"
    assert rules.identity.when_missing is Cohort.V1
    assert rules.attributes.region == "x-region" and rules.attributes.device == "x-device-model"
    assert rules.rules == () and not rules.kill_switch


@pytest.mark.parametrize(
    ("text", "buckets"),
    [("0%", 0), ("100%", BUCKETS), ("12.34%", 1234), ("10", 1000), ("2.5", 250)],
)
def test_share_forms(text: str, buckets: int) -> None:
    rules = parse_rules("s.yaml", f"rollout: {{name: r, salt: s, share: {text}}}\n".encode())
    assert rules.share == buckets


def test_version_is_a_content_hash() -> None:
    a = parse_rules("a.yaml", b"rollout: {name: r, salt: s, share: 10%}\n")
    b = parse_rules("b.yaml", b"rollout: {name: r, salt: s, share: 10%}\n")
    c = parse_rules("c.yaml", b"rollout: {name: r, salt: s, share: 20%}\n")
    assert a.version == b.version != c.version
    assert re.fullmatch(r"[0-9a-f]{12}", a.version)


def test_file_over_the_size_cap_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    path.write_bytes(b"rollout: {name: r, salt: s, share: 10%}\n" + b"#" * MAX_BYTES)
    with pytest.raises(RulesError) as info:
        load_rules(path)
    assert str(info.value) == f"{path}:1: (file): file is larger than the {MAX_BYTES} byte limit"


def test_missing_file_is_a_located_error(tmp_path: Path) -> None:
    with pytest.raises(RulesError) as info:
        load_rules(tmp_path / "nope.yaml")
    assert str(info.value).startswith(f"{tmp_path / 'nope.yaml'}:1: (file): cannot read:")


def test_header_rules_and_case_folding() -> None:
    rules = parse_rules(
        "h.yaml",
        b"rollout: {name: r, salt: s, share: 0%}\n"
        b"attributes: {region: X-Geo}\n"
        b"rules:\n"
        b"  - {name: beta, when: {headers: {X-Channel: [beta, canary]}}, cohort: v2}\n"
        b"  - {name: app, when: {headers: {x-app: {regex: '2\\.[0-9]+'}}}, share: 50%}\n",
    )
    assert rules.attributes.region == "x-geo"
    beta, app = rules.rules
    assert beta.when.headers[0].name == "x-channel"
    assert beta.when.headers[0].matches("canary") and not beta.when.headers[0].matches("Beta")
    assert app.when.headers[0].matches("2.10") and not app.when.headers[0].matches("2.1x")
