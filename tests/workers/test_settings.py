"""``--workers`` / EXTPROC_WORKERS: parsed and checked at start-up, errors name the setting."""

from __future__ import annotations

import pytest

from extproc import settings as S

NAME = "--workers (or EXTPROC_WORKERS)"


def _settings(listen: str, workers: int) -> S.ServeSettings:
    return S.ServeSettings(
        rules="rules.yaml", listen=listen, metrics="", grace_seconds=1, poll_seconds=1,
        loop="asyncio", log_level="info", workers=workers,
    )  # fmt: skip


@pytest.mark.parametrize("text", ["1", "2", "64"])
def test_worker_counts_within_1_to_64_parse(text: str) -> None:
    assert S.workers_count(text) == int(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0", f"{NAME}: 0 is not within 1..64"),
        ("65", f"{NAME}: 65 is not within 1..64"),
        ("-2", f"{NAME}: -2 is not within 1..64"),
        ("two", f"{NAME}: 'two' is not a whole number"),
        ("1.5", f"{NAME}: '1.5' is not a whole number"),
    ],
)
def test_bad_worker_counts_are_rejected_naming_the_setting(text: str, message: str) -> None:
    with pytest.raises(ValueError) as error:
        S.workers_count(text)
    assert str(error.value) == message


@pytest.mark.parametrize(
    ("listen", "message"),
    [
        (
            "unix:/tmp/extproc.sock",
            f"{NAME}: 2 workers need a TCP host:port to share,"
            " --listen (or EXTPROC_LISTEN) is 'unix:/tmp/extproc.sock'",
        ),
        (
            "127.0.0.1:0",
            f"{NAME}: 2 workers need a fixed port to share,"
            " --listen (or EXTPROC_LISTEN) is '127.0.0.1:0' (port 0)",
        ),
    ],
)
def test_several_workers_need_a_fixed_tcp_port(listen: str, message: str) -> None:
    with pytest.raises(ValueError) as error:
        S.validate(_settings(listen, workers=2))
    assert str(error.value) == message


@pytest.mark.parametrize("listen", ["unix:/tmp/extproc.sock", "127.0.0.1:0"])
def test_one_worker_keeps_unix_sockets_and_port_0(listen: str) -> None:
    assert S.validate(_settings(listen, workers=1)).workers == 1


def test_a_directly_built_setting_is_range_checked_too() -> None:
    with pytest.raises(ValueError) as error:
        S.validate(_settings("127.0.0.1:50051", workers=65))
    assert str(error.value) == f"{NAME}: 65 is not within 1..64"


@pytest.mark.parametrize(
    ("args", "env", "line"),
    [
        (["--workers", "0"], {}, f"extproc serve: {NAME}: 0 is not within 1..64"),
        ([], {"EXTPROC_WORKERS": "many"}, f"extproc serve: {NAME}: 'many' is not a whole number"),
        (
            ["--workers", "2", "--listen", "unix:/tmp/x.sock"],
            {},
            f"extproc serve: {NAME}: 2 workers need a TCP host:port to share,"
            " --listen (or EXTPROC_LISTEN) is 'unix:/tmp/x.sock'",
        ),
    ],
)
def test_serve_exits_2_with_the_message(supervise, args, env, line) -> None:
    supervised = supervise("--rules", "examples/rules.yaml", "--metrics", "", *args, env=env)
    assert supervised.proc.wait(30) == 2
    assert line in supervised.output().splitlines()


def test_help_lists_the_setting_with_its_default(supervise) -> None:
    supervised = supervise("--help")
    assert supervised.proc.wait(30) == 0
    out = supervised.output()
    assert "--workers" in out
    (row,) = [line for line in out.splitlines() if "EXTPROC_WORKERS" in line]
    assert "default '1'" in row
