"""The generated code in extproc/gen/ is exactly what scripts/gen-protos makes from protos/.

A .proto edited without regenerating, or generated code edited by hand, fails here.
(Reproducible because grpcio-tools is pinned in pyproject.toml.)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
GENERATED = Path("extproc") / "gen"


def _tree(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }


def test_generated_code_is_reproducible_from_the_protos(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHON": sys.executable}
    subprocess.run(
        [str(REPO / "scripts" / "gen-protos"), str(tmp_path)],
        check=True,
        env=env,
        capture_output=True,
    )
    fresh = _tree(tmp_path / GENERATED)
    checked_in = _tree(REPO / GENERATED)
    assert fresh, "scripts/gen-protos generated nothing"
    assert sorted(checked_in) == sorted(fresh), "run scripts/gen-protos: file sets differ"
    stale = [name for name in fresh if fresh[name] != checked_in[name]]
    assert not stale, f"run scripts/gen-protos: these differ from protos/: {stale}"


def test_the_generated_admin_api_imports_as_a_package() -> None:
    from extproc.gen.tts_canary.admin.v1 import rollout_admin_pb2, rollout_admin_pb2_grpc

    service = rollout_admin_pb2.DESCRIPTOR.services_by_name["RolloutAdmin"]
    assert service.full_name == "tts_canary.admin.v1.RolloutAdmin"
    assert rollout_admin_pb2.StatusResponse.__module__ == rollout_admin_pb2.__name__
    assert hasattr(rollout_admin_pb2_grpc, "RolloutAdminStub")
