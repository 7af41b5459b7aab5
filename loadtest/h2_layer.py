"""CPU per stream of the built-in HTTP/2 layer alone, deterministic (no Envoy, no sockets).

    .venv/bin/python -m loadtest.h2_layer [--tree DIR] [--traced] [--wanted NAMES]

Feeds one ``Connection`` (from the source tree ``--tree``, default this one: point it at a
``git archive`` of an older commit to compare) with Envoy-shaped frames: per stream HEADERS
(Envoy's gRPC request headers; ``--traced`` adds a unique ``traceparent`` as Envoy's tracer
does) + one DATA message + RST_STREAM, 32 streams per read, after the handshake. The method
returns a constant answer, so only the HTTP/2 layer is measured: process CPU time over
30,000 streams. ``--wanted``: the metadata names the methods read (comma-separated; the
sidecar reads ``traceparent`` only with its tracing on; absent: all metadata, the default
of a bare H2Server). Prints µs of CPU per stream.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import struct
import sys
import time
from pathlib import Path
from typing import Any

PATH = "/envoy.service.ext_proc.v3.ExternalProcessor/Process"
STREAMS, PER_READ = 30_000, 32
BASE_HEADERS = [
    (":method", "POST"), (":scheme", "http"), (":path", PATH), (":authority", "extproc_sidecar"),
    ("content-type", "application/grpc"), ("te", "trailers"), ("grpc-timeout", "200m"),
    ("x-envoy-internal", "true"), ("x-forwarded-for", "10.0.0.1"), ("user-agent", "envoy/1.40"),
]  # fmt: skip


class _Transport:
    def __init__(self) -> None:
        self.written = 0

    def write(self, data: bytes) -> None:
        self.written += len(data)

    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def set_write_buffer_limits(self, high: int, low: int) -> None: ...
    def close(self) -> None: ...

    def get_write_buffer_size(self) -> int:
        return 0


def _frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    size = len(payload)
    return struct.pack(">BHBBI", size >> 16, size & 0xFFFF, kind, flags, stream_id) + payload


def _reads(traced: bool) -> list[bytes]:
    import hpack

    encoder = hpack.Encoder()
    encoder.header_table_size = 0  # Envoy, once it applied our SETTINGS
    message = b"\x00" + struct.pack(">I", 200) + b"m" * 200
    reads, stream_id = [], 1
    for _ in range(STREAMS // PER_READ):
        out = []
        for _ in range(PER_READ):
            trace = [("traceparent", f"00-{stream_id * 7919:032x}-{stream_id:016x}-01")]
            block = encoder.encode(BASE_HEADERS + (trace if traced else []))
            out += [_frame(1, 4, stream_id, block), _frame(0, 0, stream_id, message)]
            out.append(_frame(3, 0, stream_id, b"\x00\x00\x00\x08"))
            stream_id += 2
        reads.append(b"".join(out))
    return reads


async def _measure(traced: bool, wanted: frozenset[str] | None) -> float:
    connection_module: Any = importlib.import_module("extproc.sidecar.h2.connection")
    routes = {PATH: lambda message, metadata: b"y" * 60}
    try:  # the hardened server
        limits: Any = importlib.import_module("extproc.h2_limits")
        guards: Any = importlib.import_module("extproc.sidecar.h2.guards")
        warnings = guards.ThrottledLog(logging.getLogger("h2_layer"), 10)
        extra = {} if wanted is None else {"metadata": wanted}
        connection = connection_module.Connection(
            routes, lambda _: None, limits.H2Limits(), warnings, **extra
        )
    except ImportError:  # before it (commit 85264cd and older)
        connection = connection_module.Connection(routes, lambda _: None)
    connection.connection_made(_Transport())
    connection.data_received(
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + _frame(4, 0, 0) + _frame(4, 1, 0)
    )
    reads = _reads(traced)
    start = time.process_time()
    for data in reads:
        connection.data_received(data)
    return (time.process_time() - start) / STREAMS * 1e6


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m loadtest.h2_layer", description=__doc__.split("\n")[0]
    )
    p.add_argument("--tree", type=Path, help="source tree to import extproc from")
    p.add_argument("--traced", action="store_true", help="a unique traceparent per stream")
    p.add_argument("--wanted", help="metadata names the methods read, comma-separated")
    args = p.parse_args(argv)
    if args.tree is not None:
        sys.path.insert(0, str(args.tree.resolve()))
        for name in [m for m in sys.modules if m == "extproc" or m.startswith("extproc.")]:
            del sys.modules[name]
    wanted = None if args.wanted is None else frozenset(filter(None, args.wanted.split(",")))
    print(f"{asyncio.run(_measure(args.traced, wanted)):.2f} us/stream")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
