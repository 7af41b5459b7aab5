"""The decision core imports no gRPC, Prometheus, OpenTelemetry or asyncio."""

from __future__ import annotations

import subprocess
import sys

FORBIDDEN = ("grpc", "prometheus_client", "opentelemetry", "asyncio", "envoy", "socket")


def test_core_imports_nothing_from_the_edge() -> None:
    code = (
        "import sys\n"
        "import extproc.core.loader, extproc.core.decide, extproc.core.model\n"
        "print(' '.join(sorted(m.split('.')[0] for m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(out.stdout.split())
    assert "extproc" in loaded
    assert not loaded & set(FORBIDDEN), loaded & set(FORBIDDEN)
