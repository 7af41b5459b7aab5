"""A legitimate ext_proc client in its own process: decides until its stdin closes.

Run by ``attack_harness.Legit`` as ``python -m sidecar.legit_client PORT``: one
Process stream per decision on one connection (as Envoy does), a few hundred
decisions a second, timed. At the end it prints one JSON line: latencies (s) and
failures. Its own process, so the attacker in the test process cannot slow it
down through the interpreter lock.
"""

from __future__ import annotations

import json
import sys
import threading
import time

import grpc
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as ext_proc_grpc

from .harness import user_request

LIMIT_SECONDS = 120  # bounded even if nobody closes stdin


def main(port: int) -> None:
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    latencies: list[float] = []
    failures: list[str] = []
    deadline = time.monotonic() + LIMIT_SECONDS
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = ext_proc_grpc.ExternalProcessorStub(channel)
        i = 0
        while not stop.is_set() and time.monotonic() < deadline:
            i += 1
            start = time.perf_counter()
            try:
                responses = list(stub.Process(iter([user_request(f"legit-{i}")]), timeout=5))
            except grpc.RpcError as exc:
                failures.append(f"{exc.code()}: {exc.details()}")
                continue
            if len(responses) != 1:
                failures.append(f"{len(responses)} responses")
            latencies.append(time.perf_counter() - start)
            if len(latencies) == 5:
                print("ready", flush=True)
            time.sleep(0.002)
    print(json.dumps({"latencies": latencies, "failures": failures}), flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]))
