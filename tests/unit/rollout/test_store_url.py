"""The ``--state`` setting: a file path, file:///path or etcd://members/prefix. Pure."""

from __future__ import annotations

from pathlib import Path

import pytest

from extproc import settings as S
from extproc.addresses import EtcdTarget, FileLocation, parse_store_url
from extproc.rollout.stores.opener import open_store
from extproc.rollout.stores.state_store import FileStateStore


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("state.json", FileLocation(Path("state.json"))),
        ("/var/run/tts/state.json", FileLocation(Path("/var/run/tts/state.json"))),
        ("file:///var/run/tts/state.json", FileLocation(Path("/var/run/tts/state.json"))),
        (
            "etcd://127.0.0.1:2379,127.0.0.1:22379/tts-canary/gpt-sovits-v2",
            EtcdTarget(("127.0.0.1:2379", "127.0.0.1:22379"), "/tts-canary/gpt-sovits-v2"),
        ),
        ("etcd://etcd-0.etcd/tts", EtcdTarget(("etcd-0.etcd:2379",), "/tts")),
        ("etcd://[::1]:2379/a", EtcdTarget(("[::1]:2379",), "/a")),
    ],
)
def test_valid(spec: str, expected: FileLocation | EtcdTarget) -> None:
    assert parse_store_url(spec) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "empty"),
        ("file://state.json", "absolute path"),
        ("s3://bucket/state", "unknown store 's3'"),
        ("etcd://127.0.0.1:2379", "needs a key prefix"),
        ("etcd://127.0.0.1:2379/", "needs a key prefix"),
        ("etcd://127.0.0.1:2379/a/", "needs a key prefix"),
        ("etcd://127.0.0.1:2379/a//b", "needs a key prefix"),
        ("etcd:///a", "member '' is not host"),
        ("etcd://h:99999/a", "member 'h:99999' is not host"),
        ("etcd://h:1,h:1/a", "listed twice"),
    ],
)
def test_invalid(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_store_url(spec)


def test_keys_and_url_round_trip() -> None:
    target = parse_store_url("etcd://a:1,b:2/tts/v2")
    assert isinstance(target, EtcdTarget)
    assert target.key("state") == "/tts/v2/state"
    assert parse_store_url(target.url()) == target


def test_a_plain_path_opens_the_file_store(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "state.json"))
    assert isinstance(store, FileStateStore)


def test_serve_refuses_a_bad_state_setting_at_start() -> None:
    settings = S.ServeSettings(
        rules="rules.yaml",
        listen="127.0.0.1:0",
        metrics="",
        grace_seconds=1,
        poll_seconds=0.25,
        loop="asyncio",
        log_level="info",
        state="etcd://127.0.0.1:2379",
    )
    with pytest.raises(ValueError, match=r"^--state \(or EXTPROC_STATE\): .*needs a key prefix"):
        S.validate(settings)
