"""Reading the secrets a sink spec names (``{env: NAME}`` / ``{file: PATH}``), at start-up.

A missing variable, an unreadable or empty file, or a URL that is not one stops the
controller with ``policy.yaml:LINE: policy.notify[i].field: what is wrong``. The value
itself never appears in a message or a log line.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from extproc.rollout.notify.config import SecretRef, check_url


def resolve(ref: SecretRef, environ: Mapping[str, str] | None = None) -> str:
    """The value ``ref`` names; ValueError (located, without the value) otherwise. A file's
    trailing newline is dropped (Kubernetes secrets and ``echo >`` leave one)."""
    if ref.value:
        return ref.value
    if ref.env:
        value = (os.environ if environ is None else environ).get(ref.env, "")
        if not value.strip():
            raise ValueError(f"{ref.where}: environment variable {ref.env} is not set or empty")
        return value.strip()
    try:
        value = Path(ref.file).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise ValueError(f"{ref.where}: cannot read {ref.file}: {reason}") from None
    if not value:
        raise ValueError(f"{ref.where}: {ref.file} is empty")
    return value


def resolve_url(ref: SecretRef, environ: Mapping[str, str] | None = None) -> str:
    """A URL from ``ref``, checked to be http(s) with a host (the value is not echoed)."""
    value = resolve(ref, environ)
    try:
        return check_url(None, None, ref.where, value)
    except ValueError:
        source = f"environment variable {ref.env}" if ref.env else ref.file
        raise ValueError(
            f"{ref.where}: {source} does not hold an http:// or https:// URL with a host"
        ) from None
