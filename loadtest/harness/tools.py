"""External tools of the harness: install wrk when missing, pin commands to CPUs.

CI machines start clean, so :func:`ensure_wrk` installs Debian's ``wrk`` with apt-get
(``apt-get update`` first) when it is not on PATH, and raises :class:`ToolError` with what to
do when that is impossible (not root, no apt-get, the install failed). Every apt-get call is
bounded in time.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence

APT_TIMEOUT_SECONDS = 600
APT_PACKAGES = {"wrk": "wrk", "h2load": "nghttp2-client"}


class ToolError(RuntimeError):
    """A load tool is missing and could not be installed."""


def ensure_tool(name: str) -> str:
    """The path of ``name``; installs its Debian package first if it is missing."""
    found = shutil.which(name)
    if found:
        return found
    package = APT_PACKAGES[name]
    hint = f"install it with `apt-get update && apt-get install -y {package}`"
    if shutil.which("apt-get") is None:
        raise ToolError(f"{name} is not installed and there is no apt-get here: {hint}")
    if os.geteuid() != 0:
        raise ToolError(f"{name} is not installed and installing needs root: {hint}")
    print(f"loadtest: {name} missing, installing Debian package {package}", file=sys.stderr)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for argv in (["apt-get", "update"], ["apt-get", "install", "-y", package]):
        try:
            done = subprocess.run(
                argv, env=env, capture_output=True, text=True, timeout=APT_TIMEOUT_SECONDS
            )
        except subprocess.TimeoutExpired as exc:
            raise ToolError(f"`{' '.join(argv)}` timed out; {hint}") from exc
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).splitlines()[-10:])
            raise ToolError(f"`{' '.join(argv)}` failed ({done.returncode}); {hint}\n{tail}")
    found = shutil.which(name)
    if found is None:
        raise ToolError(f"{package} installed but {name} is still not on PATH; {hint}")
    return found


def ensure_wrk() -> str:
    """The wrk binary (installed from Debian if missing)."""
    return ensure_tool("wrk")


def tool_version(argv: Sequence[str]) -> str:
    """First line a tool prints about its version (wrk prints it with a usage error)."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    lines = (done.stdout + done.stderr).strip().splitlines()
    return lines[0].strip() if lines else "unknown"


def pinned(argv: Sequence[str], cpus: frozenset[int] | None) -> list[str]:
    """``argv`` run with its CPU affinity set to ``cpus`` (unchanged when None).

    The affinity is set by a tiny Python prelude that then exec()s the command, so the pid
    stays the command's own and every thread it creates inherits the affinity (setting it
    from outside after start would move only the main thread).
    """
    if cpus is None:
        return list(argv)
    prelude = "import os,sys; os.sched_setaffinity(0, {%s}); os.execvp(sys.argv[1], sys.argv[1:])"
    return [sys.executable, "-c", prelude % ",".join(map(str, sorted(cpus))), *argv]
