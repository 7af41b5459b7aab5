"""``extproc serve`` as a real process: readiness, /metrics, SIGTERM drain, bad settings.

Every process started here is killed (by its own pid) in the fixture's
finalizer, so a failing test leaves nothing behind.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as ext_proc_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from extproc.core.decide import decide
from extproc.core.loader import load_rules
from extproc.sidecar.server import EXT_PROC_SERVICE

from .harness import SERVING, OpenStream, expected_metadata, metadata_of, user_request, wait_for

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_RULES = REPO / "examples" / "rules.yaml"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Served:
    """One ``extproc serve`` process and a channel to it."""

    def __init__(self, proc: subprocess.Popen[bytes], log: Path, port: int, metrics: int) -> None:
        self.proc, self.log, self.port, self.metrics_port = proc, log, port, metrics
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.stub = ext_proc_grpc.ExternalProcessorStub(self.channel)
        self._health = health_pb2_grpc.HealthStub(self.channel)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def status(self, service: str) -> int | None:
        """Health status, or None when the server does not answer."""
        try:
            request = health_pb2.HealthCheckRequest(service=service)
            return self._health.Check(request, timeout=2).status
        except grpc.RpcError:
            return None

    def accepts_new_connections(self) -> bool:
        """True while a fresh connection still gets an answer (stop() has not begun)."""
        with grpc.insecure_channel(f"127.0.0.1:{self.port}") as fresh:
            try:
                request = health_pb2.HealthCheckRequest(service="")
                health_pb2_grpc.HealthStub(fresh).Check(request, timeout=2)
            except grpc.RpcError as exc:
                return exc.code() != grpc.StatusCode.UNAVAILABLE
            return True

    def wait_serving(self) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                pytest.fail(f"extproc serve exited {self.proc.returncode}:\n{self.output()}")
            return all(self.status(s) == SERVING for s in ("", EXT_PROC_SERVICE))

        wait_for(ready, "extproc serve to report SERVING", timeout=30)


@pytest.fixture
def serve(tmp_path: Path, server_model: str) -> Iterator[Callable[..., Served]]:
    """Start ``python -m extproc serve ARGS`` with a clean EXTPROC_* environment."""
    started: list[Served] = []

    def start(*args: str, env: dict[str, str] | None = None, listen: bool = True) -> Served:
        port, metrics = free_port(), free_port()
        argv = [sys.executable, "-m", "extproc", "serve", *args]
        if listen:
            argv += ["--listen", f"127.0.0.1:{port}", "--metrics", f"127.0.0.1:{metrics}"]
        clean = {k: v for k, v in os.environ.items() if not k.startswith("EXTPROC_")}
        clean["EXTPROC_SERVER"] = server_model
        log = tmp_path / f"serve-{len(started)}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, env={**clean, **(env or {})}, cwd=REPO
            )
        served = Served(proc, log, port, metrics)
        started.append(served)
        return served

    yield start
    for served in started:
        served.channel.close()
        if served.proc.poll() is None:
            served.proc.kill()
        served.proc.wait(10)


def test_serves_decisions_health_and_metrics_then_sigterm_exits_0(serve) -> None:
    served = serve("--rules", str(EXAMPLE_RULES))
    served.wait_serving()
    user = "user-lifecycle-1"
    expected = decide(load_rules(EXAMPLE_RULES), {"x-user-id": user})
    (response,) = served.stub.Process(iter([user_request(user)]), timeout=10)
    assert metadata_of(response) == expected_metadata(expected)

    url = f"http://127.0.0.1:{served.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as reply:
        assert reply.status == 200
        assert reply.headers["Content-Type"].startswith("text/plain")
        body = reply.read().decode()
    labels = {"cohort": expected.cohort.value, "reason": "split", "rule": expected.rule}
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }
    assert samples[("tts_canary_decisions_total", tuple(sorted(labels.items())))] == 1
    assert user not in body  # raw user ids never reach metrics

    served.proc.send_signal(signal.SIGTERM)
    assert served.proc.wait(15) == 0, served.output()


def test_sigterm_lets_an_open_stream_finish(serve) -> None:
    served = serve("--rules", str(EXAMPLE_RULES), env={"EXTPROC_GRACE_SECONDS": "20"})
    served.wait_serving()
    rules = load_rules(EXAMPLE_RULES)
    stream = OpenStream(served.stub, timeout=30)
    first = stream.exchange(user_request("user-before-term"))
    assert metadata_of(first) == expected_metadata(decide(rules, {"x-user-id": "user-before-term"}))

    served.proc.send_signal(signal.SIGTERM)
    # Past this point the server has stopped accepting: only the drain keeps it up.
    wait_for(lambda: not served.accepts_new_connections(), "the sidecar to stop accepting")
    assert served.proc.poll() is None, "exited without draining the open stream"

    last = stream.exchange(user_request("user-after-term"))
    assert metadata_of(last) == expected_metadata(decide(rules, {"x-user-id": "user-after-term"}))
    stream.close()
    assert list(stream.call) == []  # the stream ends cleanly
    assert stream.call.code() == grpc.StatusCode.OK
    assert served.proc.wait(15) == 0, served.output()


RULES_ARGS = ["--rules", str(EXAMPLE_RULES)]
BAD_SETTINGS = [
    pytest.param(RULES_ARGS, {"EXTPROC_LOOP": "bogus"}, "EXTPROC_LOOP", id="loop"),
    pytest.param([], {}, "--rules", id="missing-rules"),
    pytest.param(RULES_ARGS, {"EXTPROC_GRACE_SECONDS": "0"}, "EXTPROC_GRACE_SECONDS", id="grace"),
    pytest.param([*RULES_ARGS, "--metrics", "nonsense"], {}, "--metrics", id="metrics"),
    pytest.param([*RULES_ARGS, "--listen", "127.0.0.1:99999"], {}, "--listen", id="listen"),
]


@pytest.mark.parametrize(("args", "env", "setting"), BAD_SETTINGS)
def test_bad_settings_exit_2_naming_the_setting(serve, args, env, setting) -> None:
    served = serve(*args, env=env, listen=False)
    assert served.proc.wait(30) == 2
    lines = served.output().splitlines()
    assert any(line.startswith("extproc serve: ") and setting in line for line in lines), lines


def test_a_port_in_use_is_one_clear_line_and_exit_1(serve) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        served = serve(
            "--rules",
            str(EXAMPLE_RULES),
            "--listen",
            f"127.0.0.1:{port}",
            "--metrics",
            "",
            listen=False,
        )
        assert served.proc.wait(30) == 1
    out = served.output()
    assert f"cannot start: cannot listen on 127.0.0.1:{port}" in out
    assert "Traceback" not in out
