"""Run a rollout Controller's loop in a thread for the length of a block (e2e tests)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator

from extproc.rollout.controller import Controller
from extproc.stack.processes import wait_until


@contextlib.contextmanager
def run_controller_thread(controller: Controller) -> Iterator[None]:
    """``controller.run()`` in a thread until the block ends, after its first check; its
    exceptions fail the test, and the thread must have ended when the block does."""
    failures: list[BaseException] = []

    def main() -> None:
        try:
            asyncio.run(controller.run())
        except BaseException as exc:
            failures.append(exc)

    thread = threading.Thread(target=main, name="controller", daemon=True)
    thread.start()
    try:
        wait_until(lambda: controller.checks >= 1 or bool(failures), "a first check", 10)
        yield
    finally:
        controller.request_stop()
        thread.join(timeout=10)
    assert not failures, failures
    assert not thread.is_alive()
