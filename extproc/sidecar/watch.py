"""Notice changes to the rules file, including Kubernetes ConfigMap symlink swaps.

We poll the *path* (following symlinks), not an inode: a ConfigMap update
replaces the ``..data`` symlink inside the mounted directory, so an inode
watch on the old file would never fire. The signature covers the resolved
target and its stat, so both in-place edits and swaps are seen. Polling every
250 ms keeps "a change takes effect within 1 s" with one stat() per tick.
"""

from __future__ import annotations

import os
from pathlib import Path

Signature = tuple[str, int, int, int, int] | None


def signature(path: Path) -> Signature:
    """What identifies the current content of ``path``; None if it is missing."""
    try:
        target = os.path.realpath(path)
        st = os.stat(target)
    except OSError:
        return None
    return (target, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class ChangeDetector:
    """``changed()`` is true once for each new signature of the watched path."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._last = signature(path)

    def changed(self) -> bool:
        now = signature(self.path)
        if now == self._last:
            return False
        self._last = now
        return now is not None
