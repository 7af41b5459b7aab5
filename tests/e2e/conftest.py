"""Fixtures for tests through a real Envoy: stacks on free ports that are always stopped.

- ``stack``: the real sidecar with a copy of examples/rules.yaml, shared by the session;
  before each test the sidecar is running and Envoy sees it healthy, and after each test it is
  brought back (resumed / restarted) whatever the test did to it.
- ``naive``: the same for the naive baseline processor (loadtest/naive_processor.py) at a 50 %
  share: for tests of Envoy's own behaviour, independent of the sidecar.
- ``make_stack(**kwargs)``: a fresh, private stack for tests that need their own rules or
  processor arguments (``Stack`` keyword arguments); stopped when the test ends.
- ``send(stack, headers, ...)`` -> ``Reply(status, version, headers)``: one request through
  Envoy on this thread's keep-alive connection (see extproc.stack.client).

When a test fails, the tail of every process log of its stack is printed with the report.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from extproc.stack import client
from extproc.stack.stack import DEFAULT_RULES, Stack

StackFactory = Callable[..., Stack]


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Remember each phase's report on the item, so fixtures can see if the test failed."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


def _failed(request: pytest.FixtureRequest) -> bool:
    report = getattr(request.node, "report_call", None)
    return bool(report is not None and report.failed)


def _print_logs(stack: Stack) -> None:
    print(f"\n=== logs of the stack in {stack.run_dir}")
    for process in stack.processes():
        print(process.log_tail())


def ensure_sidecar(stack: Stack) -> None:
    """Bring the stack's processor back to running and healthy in Envoy's eyes."""
    if not stack.envoy.alive():
        raise RuntimeError(f"Envoy died:\n{stack.envoy.log_tail()}")
    stack.resume_sidecar()
    if not stack.sidecar.alive():
        stack.start_sidecar()
    stack.wait_sidecar_serving()
    stack.wait_sidecar_health_in_envoy(healthy=True)


def _session_stack(tmp_path_factory: pytest.TempPathFactory, **kwargs: Any) -> Iterator[Stack]:
    run_dir = tmp_path_factory.mktemp("stack")
    with Stack.with_free_ports(run_dir=run_dir, **kwargs) as stack:
        yield stack


@pytest.fixture(scope="session")
def sidecar_session_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    rules = tmp_path_factory.mktemp("rules") / "rules.yaml"
    shutil.copyfile(DEFAULT_RULES, rules)
    yield from _session_stack(tmp_path_factory, rules=rules)


@pytest.fixture(scope="session")
def naive_session_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from _session_stack(tmp_path_factory, processor="naive", sidecar_args=["--share", "50"])


def _guarded(stack: Stack, request: pytest.FixtureRequest) -> Iterator[Stack]:
    ensure_sidecar(stack)
    yield stack
    if _failed(request):
        _print_logs(stack)
    ensure_sidecar(stack)


@pytest.fixture
def stack(sidecar_session_stack: Stack, request: pytest.FixtureRequest) -> Iterator[Stack]:
    """The shared real-sidecar stack, with the sidecar up before and after the test."""
    yield from _guarded(sidecar_session_stack, request)


@pytest.fixture
def naive(naive_session_stack: Stack, request: pytest.FixtureRequest) -> Iterator[Stack]:
    """The shared naive-processor stack (50 % share), processor up before and after."""
    yield from _guarded(naive_session_stack, request)


@pytest.fixture
def make_stack(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[StackFactory]:
    """A factory of private stacks on free ports; all are stopped when the test ends."""
    made: list[Stack] = []

    def factory(**kwargs: Any) -> Stack:
        kwargs.setdefault("run_dir", tmp_path / f"stack{len(made)}")
        stack = Stack.with_free_ports(**kwargs)
        made.append(stack)
        return stack.start()

    try:
        yield factory
    finally:
        for stack in reversed(made):
            if _failed(request):
                _print_logs(stack)
            stack.close()


@pytest.fixture
def send() -> Iterator[Callable[..., client.Reply]]:
    """``send(stack, headers, *, body=..., path="/tts", method="POST") -> Reply``."""
    yield client.send
    client.close_connections()
