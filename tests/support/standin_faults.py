"""Set a stand-in TTS server's faults at run time (``POST /admin/fault``,
extproc/standins/faults.py) in the stack of an e2e test."""

from __future__ import annotations

import json
import urllib.request
from typing import Any, Protocol


class HasStandins(Protocol):
    def tts_url(self, version: str) -> str: ...


def set_fault(stack: HasStandins, version: str, **faults: Any) -> None:
    """Change ``version``'s faults (``reset=True`` first puts every fault back); fails the
    test unless the stand-in accepts them."""
    request = urllib.request.Request(
        stack.tts_url(version) + "/admin/fault", data=json.dumps(faults).encode()
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        response.read()
        assert response.status == 200
