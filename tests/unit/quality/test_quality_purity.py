"""The scorers are pure: importing them and judging audio loads no edge or I/O framework."""

from __future__ import annotations

import subprocess
import sys

FORBIDDEN = ("grpc", "prometheus_client", "opentelemetry", "asyncio", "envoy", "socket", "http")


def test_signal_checks_import_nothing_from_the_edge() -> None:
    code = (
        "import sys\n"
        "from extproc.quality import assess\n"
        "from extproc.quality.decode import encode_wav\n"
        "import numpy as np\n"
        "figures = assess(encode_wav(np.zeros(1600, np.float32), 16000), 'hi', mos=False,"
        " asr=False)\n"
        "assert figures.valid, figures\n"
        "print(' '.join(sorted(m.split('.')[0] for m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(out.stdout.split())
    assert "extproc" in loaded
    assert not loaded & set(FORBIDDEN), loaded & set(FORBIDDEN)
    assert not loaded & {"onnxruntime", "librosa", "pocketsphinx", "scipy"}  # models are lazy
