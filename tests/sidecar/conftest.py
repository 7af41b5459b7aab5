"""Fixtures of the in-process sidecar layer; the harness itself is in harness.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from extproc.core.loader import load_rules
from extproc.core.model import Rules

from .harness import Sidecar, rules_text


@pytest.fixture(scope="module", params=["h2", "grpc"])
def server_model(request: pytest.FixtureRequest) -> str:
    """Every in-process test runs on both server models (EXTPROC_SERVER)."""
    return str(request.param)


@pytest.fixture
def start_sidecar(server_model: str) -> Iterator[Callable[..., Sidecar]]:
    """Factory: start a sidecar on a rules path; every one is stopped at teardown."""
    started: list[Sidecar] = []

    def start(rules: Path, **kwargs: Any) -> Sidecar:
        sidecar = Sidecar(rules, server=server_model, **kwargs)
        started.append(sidecar)
        return sidecar

    yield start
    for sidecar in started:
        sidecar.stop()


@pytest.fixture(scope="module")
def rules_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rules") / "rules.yaml"
    path.write_text(rules_text())
    return path


@pytest.fixture(scope="module")
def rules(rules_file: Path) -> Rules:
    """The core's view of ``rules_file``: every expected decision comes from it."""
    return load_rules(rules_file)


@pytest.fixture(scope="module")
def sidecar(rules_file: Path, server_model: str) -> Iterator[Sidecar]:
    """One sidecar shared by a module's read-only tests."""
    running = Sidecar(rules_file, server=server_model)
    yield running
    running.stop()
