"""Outside tools the tests need (Debian packages), found or explained.

``require_tool(name, package)`` returns the tool's path. Without it, a test fails under CI
(``CI`` set to true / 1 / yes: CI must install every package, so a missing one is an error
there) and is skipped elsewhere, with the apt command that installs it either way.
"""

from __future__ import annotations

import os
import shutil

import pytest


def running_in_ci() -> bool:
    """True when the ``CI`` environment variable says so (true, 1 or yes)."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def require_tool(name: str, package: str) -> str:
    """Path of ``name`` on PATH; else pytest.fail under CI, pytest.skip otherwise."""
    found = shutil.which(name)
    if found is not None:
        return found
    message = f"{name} is not installed: apt-get install {package}"
    if running_in_ci():
        pytest.fail(f"{message} (required under CI)")
    pytest.skip(message)
