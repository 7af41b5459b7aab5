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
- ``send_all(stack, requests, threads=4)`` -> ``[Reply]``: many requests (one headers mapping
  each) through Envoy from a few threads with keep-alive connections; replies in input order.
- ``logged(stack, request_ids, offset)``: wait until Envoy's access log has an
  entry for each ``x-request-id`` (Envoy keeps the client's, up to the trace-reason digit it
  packs into a UUID when tracing) and return them by id.

When a test fails, the tail of every process log of its stack is printed with the report.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from extproc.stack import client
from extproc.stack.processes import wait_until
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


def send_concurrently(
    stack: Stack, requests: Sequence[Mapping[str, str]], threads: int = 4
) -> list[client.Reply]:
    """Send each headers mapping through Envoy; request ``i`` goes out on thread ``i % threads``,
    which reuses one keep-alive connection (closed at the end). Replies in input order; the
    first exception of any thread is raised."""
    replies: list[client.Reply | None] = [None] * len(requests)

    def stripe(first: int) -> None:
        try:
            for i in range(first, len(requests), threads):
                replies[i] = client.send(stack, requests[i])
        finally:
            client.close_connections()

    with ThreadPoolExecutor(max_workers=threads) as pool:
        for future in [pool.submit(stripe, k) for k in range(threads)]:
            future.result()
    done = [reply for reply in replies if reply is not None]
    assert len(done) == len(requests)
    return done


@pytest.fixture
def send_all() -> Iterator[Callable[..., list[client.Reply]]]:
    """``send_all(stack, requests, threads=4) -> [Reply]`` (see :func:`send_concurrently`)."""
    yield send_concurrently


def logged_by_request_id(
    stack: Stack, request_ids: Collection[str], offset: int = 0, timeout: float = 10.0
) -> dict[str, dict[str, Any]]:
    """Wait until Envoy's access log (after byte ``offset``) has an entry for every request id;
    returns those entries by id."""
    wanted = {_uuid_without_trace_reason(rid): rid for rid in request_ids}
    found: dict[str, dict[str, Any]] = {}

    def all_logged() -> bool:
        for entry in stack.access_log(offset):
            rid = wanted.get(_uuid_without_trace_reason(str(entry.get("request_id"))))
            if rid is not None:
                found[rid] = entry
        return len(found) == len(wanted)

    wait_until(all_logged, f"{len(wanted)} request ids in the access log", timeout, stack.envoy)
    return found


def _uuid_without_trace_reason(request_id: str) -> str:
    """A UUID request id without its version digit: with tracing on, Envoy packs the trace
    reason there (UuidRequestIdConfig.pack_trace_reason), e.g. ``...-4xxx-...`` -> ``9xxx``."""
    return request_id[:14] + request_id[15:]


@pytest.fixture
def logged() -> Iterator[Callable[..., dict[str, dict[str, Any]]]]:
    """``logged(stack, request_ids, offset=0)`` (see :func:`logged_by_request_id`)."""
    yield logged_by_request_id
