"""Fixtures: start ``extproc serve --workers N`` processes that are always killed afterwards."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from extproc.stack.processes import free_port

from .harness import EXAMPLE_RULES, Served, Supervised, serve_argv


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXTPROC_")}
    return {**env, "PYTHONUNBUFFERED": "1", **(extra or {})}


@pytest.fixture
def supervise(tmp_path: Path) -> Iterator[Callable[..., Supervised]]:
    """``supervise(*args, env=...)``: ``extproc serve ARGS`` as given (no ports added)."""
    started: list[Supervised] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Supervised:
        log = tmp_path / f"supervisor-{len(started)}.log"
        supervised = Supervised(serve_argv(*args), clean_env(env), log)
        started.append(supervised)
        return supervised

    yield start
    for supervised in started:
        supervised.kill_group()


@pytest.fixture
def serve_workers(tmp_path: Path) -> Iterator[Callable[..., Served]]:
    """``serve_workers(workers, rules=..., env=...)``: a supervisor on free ports, ready."""
    started: list[Served] = []

    def start(workers: int, rules: Path = EXAMPLE_RULES, env: dict[str, str] | None = None):
        port, metrics = free_port(), free_port()
        args = ["--rules", str(rules), "--workers", str(workers)]
        args += ["--listen", f"127.0.0.1:{port}", "--metrics", f"127.0.0.1:{metrics}"]
        log = tmp_path / f"served-{len(started)}.log"
        served = Served(serve_argv(*args), clean_env(env), log, port, metrics)
        started.append(served)
        served.wait_ready(workers)
        return served

    yield start
    for served in started:
        served.kill_group()
