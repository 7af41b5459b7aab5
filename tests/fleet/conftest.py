"""Fixtures of the fleet tests: a real 3-member etcd cluster on loopback, always stopped.

- ``etcd``: a fresh cluster per test (members on free 127.0.0.1 ports, data in tmp_path);
  stopped at teardown whatever the test did to it; its logs are printed if the test failed.
- ``prefix``: a key prefix of the test's own (``/fleet-test/<test name>``).
- ``open_store(endpoints=None)``: an EtcdStateStore on its own session (like a separate
  process), closed at teardown; ``endpoints`` reorders the members it tries first.

The measured figures (see figures.py) are printed in the terminal summary.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from extproc.addresses import EtcdTarget
from extproc.rollout.stores.etcd_store import EtcdStateStore
from tests.fleet import figures
from tests.support.etcd_cluster import EtcdCluster

StoreFactory = Callable[..., EtcdStateStore]


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


def pytest_terminal_summary(terminalreporter: Any) -> None:
    lines = figures.recorded()
    if lines:
        terminalreporter.section("fleet figures (measured)")
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture
def etcd(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[EtcdCluster]:
    cluster = EtcdCluster(tmp_path / "etcd")
    with cluster:
        yield cluster
        report = getattr(request.node, "report_call", None)
        if report is not None and report.failed:
            print(f"\n=== etcd logs\n{cluster.log_tails()}")


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> str:
    return "/fleet-test/" + re.sub(r"[^A-Za-z0-9._-]", "-", request.node.name)


@pytest.fixture
def open_store(etcd: EtcdCluster, prefix: str) -> Iterator[StoreFactory]:
    opened: list[EtcdStateStore] = []

    def make(endpoints: list[str] | None = None) -> EtcdStateStore:
        store = EtcdStateStore(EtcdTarget(tuple(endpoints or etcd.endpoints), prefix))
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()
