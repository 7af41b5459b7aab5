"""A stand-in for ``extproc.quality.assess`` in tests of the probe process (no models).

The text picks the behaviour: ``crash`` kills the scorer process (like a segfault in a native
library), ``hang`` never answers, ``raise`` raises; anything else gets figures derived from
the audio bytes: ``b"RIFF..."`` is valid with ``mos`` = the byte after ``RIFF`` / 50, other
bytes are invalid (``not_wav``).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class FakeFigures:
    values: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.values)


def assess(
    audio: bytes, text: str, *, mos: bool = True, asr: bool = True, max_bytes: int = 0, **_: Any
) -> FakeFigures:
    if text == "crash":
        os._exit(139)
    if text == "hang":
        time.sleep(3600)
    if text == "raise":
        raise RuntimeError("scorer bug")
    if not audio.startswith(b"RIFF") or len(audio) < 5:
        return FakeFigures({"valid": False, "invalid_reason": "not_wav", "mos": None})
    return FakeFigures(
        {
            "valid": True,
            "invalid_reason": "",
            "mos": audio[4] / 50 if mos else None,
            "duration_s": 1.0,
            "silence_ratio": 0.1,
            "clipping_ratio": 0.0,
            "wer": 0.5,
        }
    )
