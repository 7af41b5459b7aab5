"""The xds-protos / opentelemetry-proto clash (grpc/grpc#42926) fails at start, clearly.

xds-protos ships a stale ``opentelemetry/proto/`` whose ``common_pb2`` lacks
``InstrumentationScope``; installed last, it breaks the OTLP exporter at import.
The test reproduces exactly that module state in a child process and starts the
sidecar with tracing on: it must exit 3 with the fix in the message, not serve
half-working. (That the install scripts/setup makes exports spans is shown by test_tracing.)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from extproc.telemetry.tracing import tracing_configured

ROOT = Path(__file__).resolve().parents[2]

STALE = """
import sys, types
from opentelemetry.proto.common.v1 import common_pb2 as current
stale = types.ModuleType(current.__name__)
stale.__dict__.update({k: v for k, v in vars(current).items() if k != "InstrumentationScope"})
stale.InstrumentationLibrary = object  # what the stale copy has instead
sys.modules[stale.__name__] = stale
from extproc.cli import main
raise SystemExit(main(sys.argv[1:]))
"""


def test_a_stale_opentelemetry_proto_stops_the_sidecar_with_the_fix(tmp_path: Path) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("EXTPROC_", "OTEL_"))},
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
        "EXTPROC_METRICS": "",
    }
    argv = [
        sys.executable,
        "-c",
        STALE,
        "serve",
        "--rules",
        str(ROOT / "examples/rules.yaml"),
        "--listen",
        "127.0.0.1:0",
    ]
    done = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 3, done.stderr
    assert "cannot import name 'InstrumentationScope'" in done.stderr
    assert "pip install --no-deps --force-reinstall 'opentelemetry-proto==1.45.2'" in done.stderr


def test_the_real_install_has_the_current_opentelemetry_proto() -> None:
    from opentelemetry.proto.common.v1 import common_pb2

    assert hasattr(common_pb2, "InstrumentationScope"), (
        "run scripts/setup (see docs/observability.md)"
    )
    assert tracing_configured({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317"})
    assert not tracing_configured({})
    assert not tracing_configured(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4317", "OTEL_SDK_DISABLED": "true"}
    )
