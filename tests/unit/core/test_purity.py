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


def test_import_contracts_hold_and_catch_a_wrong_way_import(tmp_path) -> None:
    """pyproject's import-linter contracts pass on the tree and fail on a core -> sidecar import."""
    import shutil
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    lint = Path(sys.executable).with_name("lint-imports")
    ok = subprocess.run(
        [str(lint), "--no-cache"], cwd=root, capture_output=True, text=True, timeout=120
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr

    shutil.copy(root / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copytree(
        root / "extproc", tmp_path / "extproc", ignore=shutil.ignore_patterns("__pycache__")
    )
    with (tmp_path / "extproc/core/bucket.py").open("a") as f:
        f.write("\nimport extproc.sidecar.processor  # the wrong way\n")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path)}
    bad = subprocess.run(
        [str(lint)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert bad.returncode != 0
    assert "extproc.core is not allowed to import extproc.sidecar" in bad.stdout
