"""``extproc health`` (extproc/healthcheck.py) against a real sidecar process: SERVING only
after good rules, 1 for anything else, and the default address follows EXTPROC_LISTEN.
The module is driven through its own parser here; test_dockerfile.py runs the console
command exactly as the image's HEALTHCHECK does."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from extproc import healthcheck
from extproc.sidecar.models import EXT_PROC_SERVICE
from extproc.stack.processes import ManagedProcess, free_port, grpc_serving, wait_until

ROOT = Path(__file__).resolve().parents[3]
RULES = ROOT / "examples" / "rules.yaml"


def run_health(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="extproc")
    healthcheck.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["health", *argv])
    code = int(args.func(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def start_sidecar(tmp_path: Path, rules: Path, port: int) -> ManagedProcess:
    argv = [sys.executable, "-m", "extproc", "serve", "--rules", str(rules)]
    argv += ["--listen", f"127.0.0.1:{port}", "--metrics", ""]
    return ManagedProcess("sidecar", argv, tmp_path / "sidecar.log").start()


@pytest.fixture
def sidecar_port(tmp_path: Path) -> Iterator[int]:
    port = free_port()
    with start_sidecar(tmp_path, RULES, port) as sidecar:
        wait_until(lambda: grpc_serving(f"127.0.0.1:{port}"), "the sidecar", 30, sidecar)
        yield port


def test_the_default_service_names_match_the_sidecar() -> None:
    assert healthcheck.EXT_PROC_SERVICE == EXT_PROC_SERVICE


@pytest.mark.parametrize(
    ("listen", "target"),
    [
        ("0.0.0.0:50051", "127.0.0.1:50051"),
        (":50051", "127.0.0.1:50051"),
        ("[::]:50051", "[::1]:50051"),
        ("10.1.2.3:50051", "10.1.2.3:50051"),
        ("127.0.0.1:7", "127.0.0.1:7"),
        ("unix:/run/extproc.sock", "unix:/run/extproc.sock"),
    ],
)
def test_a_wildcard_listen_address_is_dialled_on_loopback(listen: str, target: str) -> None:
    assert healthcheck.dial_target(listen) == target


@pytest.mark.parametrize("service", ["", EXT_PROC_SERVICE])
def test_serving_sidecar_exits_zero(
    sidecar_port: int, service: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_health(capsys, "--addr", f"127.0.0.1:{sidecar_port}", "--service", service)
    assert (code, out) == (0, "SERVING\n")


def test_default_address_is_the_sidecars_listen_setting(
    sidecar_port: int, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXTPROC_LISTEN", f"0.0.0.0:{sidecar_port}")
    assert run_health(capsys)[0] == 0


def test_unknown_service_exits_one_and_says_not_found(
    sidecar_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_health(capsys, "--addr", f"127.0.0.1:{sidecar_port}", "--service", "nope")
    assert code == 1
    assert "NOT_FOUND" in err


def test_nothing_listening_exits_one(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_health(capsys, "--addr", f"127.0.0.1:{free_port()}", "--timeout", "1")
    assert (code, out) == (1, "")
    assert "UNAVAILABLE" in err or "DEADLINE_EXCEEDED" in err


def test_not_serving_until_the_rules_are_good(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("rollout: {name: broken\n")
    port = free_port()
    with start_sidecar(tmp_path, rules, port) as sidecar:
        address = f"127.0.0.1:{port}"
        wait_until(lambda: _answers(address), "the sidecar to answer", 30, sidecar)
        code, _, err = run_health(capsys, "--addr", address, "--service", EXT_PROC_SERVICE)
        assert (code, "NOT_SERVING" in err) == (1, True)
        staged = tmp_path / "staged.yaml"
        shutil.copyfile(RULES, staged)
        os.replace(staged, rules)
        wait_until(lambda: run_health(capsys, "--addr", address)[0] == 0, "SERVING", 30, sidecar)


def _answers(address: str) -> bool:
    """True once the server answers Check at all (whatever the status)."""
    serving, answer = healthcheck.check(address, "", 1.0)
    return serving or answer == "NOT_SERVING"
