"""Hot reload and readiness of the real in-process server.

Each test owns its rules directory and server. Waits are on the reload counter,
the serving version or the health status, with a deadline; never a fixed sleep.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from extproc.core.decide import decide
from extproc.core.errors import RulesError
from extproc.core.loader import load_rules
from extproc.sidecar.server import EXT_PROC_SERVICE

from .harness import (
    NOT_SERVING,
    SERVING,
    Sidecar,
    cohort_of,
    expected_metadata,
    metadata_of,
    rules_text,
    user_request,
    wait_for,
)

USERS = [f"ramp-user-{i}" for i in range(2000)]


def cohorts(sidecar: Sidecar) -> tuple[dict[str, str], set[str]]:
    """Every sample user's cohort through one stream, and the versions answered."""
    responses = sidecar.process(*(user_request(u) for u in USERS))
    return (
        {u: cohort_of(r) for u, r in zip(USERS, responses, strict=True)},
        {str(metadata_of(r)["version"]) for r in responses},
    )


def write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def wait_reloaded(sidecar: Sidecar, loaded_before: float, version: str) -> None:
    wait_for(
        lambda: sidecar.reloads("loaded") > loaded_before and sidecar.version() == version,
        f"reload to version {version}",
    )


def assert_ramp_only_adds_v2(before: dict[str, str], after: dict[str, str]) -> None:
    back = [u for u in USERS if before[u] == "v2" and after[u] == "v1"]
    assert back == [], f"{len(back)} users moved back from v2 to v1"
    moved = sum(before[u] == "v1" and after[u] == "v2" for u in USERS)
    assert moved > 0, "the 20% share never reached the stream"


def test_in_place_edit_is_picked_up_and_ramp_is_monotonic(tmp_path: Path, start_sidecar) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(rules_text("10%"))
    sidecar = start_sidecar(path)
    old = load_rules(path)
    before, versions = cohorts(sidecar)
    assert versions == {old.version}

    loaded = sidecar.reloads("loaded")
    with path.open("w") as handle:  # in place: same inode, truncate + write
        handle.write(rules_text("20%"))
    new = load_rules(path)
    assert new.version != old.version
    wait_reloaded(sidecar, loaded, new.version)

    after, versions = cohorts(sidecar)
    assert versions == {new.version}
    assert after == {u: decide(new, {"x-user-id": u}).cohort.value for u in USERS}
    assert_ramp_only_adds_v2(before, after)


def test_configmap_symlink_swap_is_picked_up(tmp_path: Path, start_sidecar) -> None:
    # The layout kubelet mounts: rules.yaml -> ..data/rules.yaml, ..data -> ..<timestamp>
    first = tmp_path / "..2026_v1"
    first.mkdir()
    (first / "rules.yaml").write_text(rules_text("10%"))
    (tmp_path / "..data").symlink_to(first.name)
    path = tmp_path / "rules.yaml"
    path.symlink_to("..data/rules.yaml")
    sidecar = start_sidecar(path)
    before, _ = cohorts(sidecar)

    second = tmp_path / "..2026_v2"
    second.mkdir()
    (second / "rules.yaml").write_text(rules_text("20%"))
    loaded = sidecar.reloads("loaded")
    (tmp_path / "..data_tmp").symlink_to(second.name)
    os.replace(tmp_path / "..data_tmp", tmp_path / "..data")  # the atomic swap
    new = load_rules(second / "rules.yaml")
    wait_reloaded(sidecar, loaded, new.version)

    after, versions = cohorts(sidecar)
    assert versions == {new.version}
    assert_ramp_only_adds_v2(before, after)


def test_broken_file_keeps_last_good_rules_then_a_fix_loads(
    tmp_path: Path, start_sidecar, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="extproc")
    path = tmp_path / "rules.yaml"
    path.write_text(rules_text("10%"))
    sidecar = start_sidecar(path)
    good = load_rules(path)

    broken = rules_text("30%").replace("  salt:", "  sallt:")
    line = broken.splitlines().index("  sallt: sidecar-test-salt") + 1
    failed = sidecar.reloads("failed")
    write_atomically(path, broken)
    with pytest.raises(RulesError) as rejected:
        load_rules(path)
    assert rejected.value.line == line
    wait_for(lambda: sidecar.reloads("failed") > failed, "the failed reload to be counted")

    assert sidecar.version() == good.version
    meta = metadata_of(sidecar.decide(user_request("user-during-break")))
    assert meta == expected_metadata(decide(good, {"x-user-id": "user-during-break"}))
    assert sidecar.serving()
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any(f"{path}:{line}: " in m and str(rejected.value) in m for m in errors), errors

    loaded = sidecar.reloads("loaded")
    write_atomically(path, rules_text("30%"))
    fixed = load_rules(path)
    wait_reloaded(sidecar, loaded, fixed.version)
    meta = metadata_of(sidecar.decide(user_request("user-after-fix")))
    assert meta == expected_metadata(decide(fixed, {"x-user-id": "user-after-fix"}))


@pytest.mark.parametrize("initial", ["missing", "broken"])
def test_not_serving_until_first_good_rules(tmp_path: Path, start_sidecar, initial: str) -> None:
    path = tmp_path / "rules.yaml"
    if initial == "broken":
        path.write_text(rules_text("10%") + "surprise: 1\n")
    sidecar = start_sidecar(path)

    for service in ("", EXT_PROC_SERVICE):
        assert sidecar.health(service) == NOT_SERVING
    assert sidecar.version() is None
    response = sidecar.decide(user_request("qa-001"))  # a forced-v2 user, still v1
    assert cohort_of(response) == "v1"
    assert metadata_of(response) == {
        "cohort": "v1",
        "reason": "error",
        "rule": "no_rules",
        "bucket": -1.0,
        "version": "",
    }

    write_atomically(path, rules_text("10%"))
    wait_for(sidecar.serving, "SERVING on both health service names")
    assert sidecar.health(EXT_PROC_SERVICE) == SERVING
    good = load_rules(path)
    meta = metadata_of(sidecar.decide(user_request("qa-001")))
    assert meta == expected_metadata(decide(good, {"x-user-id": "qa-001"}))
