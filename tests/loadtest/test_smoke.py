"""The load-test harness end to end in quick mode, plus the two claims its figures rest on.

No timing assertions about the stack: the figures depend on the machine. The checks are that
the harness runs, that every figure exists for all four setups, that every request of every
window was answered 200 and routed by cohort, that the native reference is a valid Envoy
config without ext_proc, and that the open-loop client charges a server stall to every
request scheduled during it (no coordinated omission).
"""

from __future__ import annotations

import json
import math
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from extproc.stack import envoy_config
from extproc.stack.stack import REPO_ROOT, find_envoy
from loadtest.harness import envoy_configs
from loadtest.harness.openloop import OpenLoopRun

pytestmark = pytest.mark.envoy

COMMON = {"wall_s", "requests", "non_2xx", "client_failed", "all_200", "v2_share",
          "other_cpu_util", "envoy_cpu_us_per_req", "envoy_cpu_util", "upstream_cpu_us_per_req",
          "loadgen_cpu_us_per_req", "client_requests"}  # fmt: skip
PROCESSOR = {"processor_cpu_us_per_req", "processor_cpu_util", "decided",
             "ext_proc_failure_mode_allowed", "ext_proc_message_timeouts"}  # fmt: skip
SATURATION = {"rps", "wrk_latency_p50_ms", "wrk_latency_p99_ms"}
OPEN_LOOP = {"p50_ms", "p99_ms", "p999_ms", "max_ms", "achieved_rps", "send_lag_p99_ms"}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("loadtest")
    # 200 req/s: far below what even the naive processor serves, on a busy CI machine too
    argv = [sys.executable, "-m", "loadtest.bench", "--quick", "--rates", "200", "--out", str(out)]
    done = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=150)
    assert done.returncode == 0, done.stderr[-4000:]
    assert (out / "results.md").read_text().startswith("# Load-test results")
    result: dict[str, Any] = json.loads((out / "results.json").read_text())
    result["test_out_dir"] = str(out)
    return result


@pytest.mark.timeout(180)
def test_quick_run_has_every_figure_and_only_200s(quick_run: dict[str, Any]) -> None:
    (only_round,) = quick_run["rounds"]
    assert set(only_round["setups"]) == {"native", "naive", "sidecar", "traced"}
    for setup, figures in only_round["setups"].items():
        expected = {f"saturation.{k}" for k in COMMON | SATURATION}
        expected |= {f"rate_200.{k}" for k in COMMON | OPEN_LOOP}
        if setup != "native":
            expected |= {f"{w}.{k}" for w in ("saturation", "rate_200") for k in PROCESSOR}
            expected.add("processor_rss_mb")
        assert expected <= set(figures), f"{setup}: missing {sorted(expected - set(figures))}"
        assert all(math.isfinite(figures[k]) for k in expected), setup
        for window in ("saturation", "rate_200"):
            assert figures[f"{window}.requests"] > 0, (setup, window)
            assert figures[f"{window}.client_failed"] == 0, (setup, window)
            assert figures[f"{window}.non_2xx"] == 0, (setup, window)
            assert figures[f"{window}.all_200"] == 1.0, (setup, window)
            assert 0.02 < figures[f"{window}.v2_share"] < 0.3, (setup, window)  # routed by cohort
            if setup != "native":  # the processor was on the path (it may fail open at times)
                assert figures[f"{window}.decided"] > 0.5, (setup, window)
    assert set(quick_run["medians"]) == {"native", "naive", "sidecar", "traced"}
    comparison = quick_run["comparison"]
    assert "saturation.rps.sidecar/native" in comparison
    assert "rate_200.p99_ms.sidecar-native" in comparison
    assert math.isfinite(comparison["tracing.saturation_loss_pct"])
    assert math.isfinite(comparison["tracing.saturation.processor_cpu_us_per_req"])
    assert len(quick_run["targets"]) == 8  # no rate 1000, no bare setup: three are None


def test_traced_setup_exported_its_spans_to_the_sink(quick_run: dict[str, Any]) -> None:
    """The traced setup really traced: the sink received Export calls (its log at exit)."""
    log = Path(quick_run["test_out_dir"]) / "logs" / "otlp-sink.log"
    calls = int(log.read_text().split("otlp sink: ")[1].split(" export calls")[0])
    assert calls > 0


def test_native_reference_is_valid_and_has_no_ext_proc(tmp_path: Path) -> None:
    shipped = envoy_config.render_config(envoy_config.default_ports())
    native = envoy_configs.native_routing(envoy_configs.without_access_log(shipped))
    text = json.dumps(native)
    assert "ext_proc" not in text and envoy_config.SIDECAR_CLUSTER not in text
    assert "weighted_clusters" in text and "early_header_mutation_extensions" in text
    path = envoy_config.write_config(native, tmp_path)
    validate = [find_envoy(), "--mode", "validate", "-c", str(path)]
    done = subprocess.run(validate, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture
def stalling_server() -> Iterator[tuple[int, threading.Event]]:
    """HTTP/1.1 keep-alive server answering at once, except that the 20th request is held for
    0.35 s (or until the returned event is set): the stall starts when that request arrives,
    however late a loaded machine gets there."""
    listener = socket.create_server(("127.0.0.1", 0))
    release, count = threading.Event(), [0]

    def serve(conn: socket.socket) -> None:
        with conn:
            buffer = b""
            while chunk := conn.recv(65536):
                buffer += chunk
                while b"\r\n\r\n" in buffer:
                    head, _, rest = buffer.partition(b"\r\n\r\n")
                    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                    if len(rest) < length:
                        break
                    buffer = rest[length:]
                    count[0] += 1
                    if count[0] == 20:
                        release.wait(0.35)
                    conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield listener.getsockname()[1], release
    release.set()
    listener.close()


def test_open_loop_client_counts_a_stall_against_every_request_due_during_it(
    stalling_server: tuple[int, threading.Event],
) -> None:
    port, _release = stalling_server
    # the 20th request (due at ~0.1 s) is held for 0.35 s
    run = OpenLoopRun("127.0.0.1", port, 200, 1.5, max_connections=1, initial_connections=1)
    started = time.monotonic()
    result = run.run()
    assert time.monotonic() - started < 10
    assert result["status"] == {"200": 300} and not result["errors"]
    # ~70 requests were due while the only connection was held: from their scheduled time
    # they waited up to ~0.35 s, so the mean is far above the per-request service time.
    assert result["latency_ms"]["mean"] > 5 * result["service_ms"]["mean"]
    assert result["latency_ms"]["p99"] > 50
