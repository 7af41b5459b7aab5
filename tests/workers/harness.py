"""``extproc serve --workers N`` as a real process tree, and what the tests read from it.

``Supervised`` is one supervisor started in its own process group (its workers join it);
the ``supervise`` fixture (conftest.py) SIGKILLs each group it started in its finalizer, so a
failing test leaves no worker behind. Everything waits on a condition, never a fixed sleep.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import grpc
from envoy.service.ext_proc.v3 import external_processor_pb2 as ext_proc
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as ext_proc_grpc
from prometheus_client.parser import text_string_to_metric_families

from loadtest.harness.procstat import group_pids
from tests.sidecar.harness import user_request, wait_for

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_RULES = REPO / "examples" / "rules.yaml"
DECISIONS = "tts_canary_decisions_total"
#: A fresh connection per call: the kernel spreads connections, not streams, over workers.
FRESH = [("grpc.use_local_subchannel_pool", 1)]

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def process_state(pid: int) -> str | None:
    """The /proc state letter of ``pid`` (``Z`` for a zombie), None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2]


def children(pid: int) -> set[int]:
    """Live (not zombie) child pids of ``pid``."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(entry.name))
    return found


class Supervised:
    """One ``python -m extproc serve --workers N`` process and its log."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO,
                start_new_session=True,
            )  # fmt: skip

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill_group(self) -> None:
        """SIGKILL the supervisor's process group (it and its workers), then reap it."""
        if self.proc.poll() is None or group_pids(self.proc.pid):  # orphaned workers too
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)


class Served(Supervised):
    """A supervisor listening on ``port`` with /metrics on ``metrics_port``."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path, port: int, metrics: int):
        super().__init__(argv, env, log)
        self.port, self.metrics_port = port, metrics

    def scrape(self) -> Samples:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as reply:
            body = reply.read().decode()
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body)
            for s in family.samples
        }

    def value(self, name: str) -> float:
        """An unlabelled sample (the supervisor's own metrics); 0 when absent."""
        return self.scrape().get((name, ()), 0.0)

    def decisions_by_worker(self) -> dict[str, float]:
        by_worker: dict[str, float] = {}
        for (name, labels), value in self.scrape().items():
            if name == DECISIONS:
                worker = dict(labels)["worker"]
                by_worker[worker] = by_worker.get(worker, 0.0) + value
        return by_worker

    def decide(self, user: str) -> ext_proc.ProcessingResponse:
        """One Process call for ``user`` on a new connection."""
        with grpc.insecure_channel(f"127.0.0.1:{self.port}", options=FRESH) as channel:
            stub = ext_proc_grpc.ExternalProcessorStub(channel)
            (response,) = stub.Process(iter([user_request(user)]), timeout=10)
        return response

    def wait_ready(self, workers: int) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"supervisor exited {self.proc.returncode}:\n{self.output()}")
            try:
                return self.value("tts_canary_workers_up") == workers
            except OSError:
                return False

        wait_for(ready, f"{workers} workers up", timeout=60)

    def decide_until_every_worker_decided(self, workers: int, limit: int = 400) -> int:
        """Decide on fresh connections until each worker has decided once (at most ``limit``
        calls, each answered); returns the calls made."""
        for call in range(1, limit + 1):
            self.decide(f"spread-user-{call}")
            by_worker = self.decisions_by_worker()
            if len([v for v in by_worker.values() if v > 0]) == workers:
                return call
        raise AssertionError(f"{limit} connections never reached every worker: {by_worker}")


def serve_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "extproc", "serve", *args]
