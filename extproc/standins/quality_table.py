"""The figures table of docs/audio-quality.md, from real stand-in audio: ``python -m
extproc.standins.quality_table [--texts N] [--voices v1,v2]``.

Starts the stand-in TTS servers in this process (real HTTP on loopback ports), turns each fault
on through ``POST /admin/fault`` as a test would, fetches the answer for every text, scores it
with ``extproc.quality.assess`` (the read-back with the texts as its vocabulary, as the probes
use it) and prints one Markdown table per voice: the mean of each figure over the texts.
"""

from __future__ import annotations

import argparse
import json
import threading
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from statistics import fmean
from typing import Any

from extproc.quality import AudioFigures, assess, decode
from extproc.standins.faults import Faults
from extproc.standins.server import TtsStandinServer

TEXTS = (
    "Hello, how can I help you today?",
    "Turn left at the second traffic light, continue along the river for about two "
    "kilometres, and you will find the station entrance on the right.",
    "The total is 1,284 dollars and 56 cents, due in 30 days.",
    "The old lighthouse keeper climbed the narrow stairs every evening and lit the great lamp.",
    "Thank you for calling. Goodbye.",
)
TRUNCATE_TO = 0.4  # the truncated row keeps the first 40 % of the clean audio
# (label, fault JSON); "truncate" is filled per text from the clean duration
CONDITIONS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("clean", {}),
    ("clipped (gain x8)", {"clipping": 8}),
    ("noisy (sd 0.1)", {"noise": 0.1}),
    ("truncated to 40 %", {"truncate": TRUNCATE_TO}),
    ("silent", {"silence": True}),
)
EXTRA_CONDITIONS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("wrong sample rate (header says 8 kHz)", {"wrong_sample_rate": 8_000}),
)
COLUMNS = (
    ("P.808 MOS", "mos"),
    ("SIG", "sig"),
    ("BAK", "bak"),
    ("OVRL", "ovrl"),
    ("WER", "wer"),
    ("silence", "silence_ratio"),
    ("clipping", "clipping_ratio"),
    ("s/char", "seconds_per_char"),
)


@dataclass(frozen=True, slots=True)
class Row:
    label: str
    figures: tuple[AudioFigures, ...]

    def mean(self, field: str) -> float | None:
        values = [getattr(f, field) for f in self.figures if getattr(f, field) is not None]
        return fmean(values) if values else None


@contextmanager
def standin(version: str) -> Iterator[str]:
    """A stand-in server of ``version`` on a free loopback port; yields its base URL."""
    server = TtsStandinServer(("127.0.0.1", 0), version, Faults())
    server.log_faults = False
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def post(url: str, body: bytes) -> bytes:
    with urllib.request.urlopen(urllib.request.Request(url, data=body), timeout=60) as reply:
        data: bytes = reply.read()
    return data


def audio(base: str, text: str, fault: dict[str, Any]) -> bytes:
    post(base + "/admin/fault", json.dumps({"reset": True, **fault}).encode())
    return post(base + "/tts", json.dumps({"text": text}).encode())


def rows_for(
    version: str,
    texts: Sequence[str],
    *,
    mos: bool = True,
    conditions: Sequence[tuple[str, dict[str, Any]]] = CONDITIONS,
) -> list[Row]:
    """One Row per condition: the figures of every text, spoken by ``version``'s stand-in."""
    rows = []
    with standin(version) as base:
        clean_s = {text: decode(audio(base, text, {})).duration_s for text in texts}
        for label, fault in conditions:
            figures = []
            for text in texts:
                wanted = dict(fault)
                if "truncate" in wanted:
                    wanted = {"truncate_ms": 1000 * clean_s[text] * wanted.pop("truncate")}
                body = audio(base, text, wanted)
                figures.append(assess(body, text, mos=mos, asr_vocabulary=tuple(texts)))
            rows.append(Row(label, tuple(figures)))
    return rows


def markdown(version: str, rows: Sequence[Row], texts: int) -> str:
    head = f"| {version} ({texts} texts) | " + " | ".join(name for name, _ in COLUMNS) + " |"
    lines = [head, "|---" * (len(COLUMNS) + 1) + "|"]
    for row in rows:
        cells = [_cell(row.mean(field)) for _, field in COLUMNS]
        lines.append(f"| {row.label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", type=int, default=len(TEXTS), help="how many texts to use")
    parser.add_argument("--voices", default="v1,v2", help="stand-in versions, comma-separated")
    args = parser.parse_args(argv)
    texts = TEXTS[: max(1, args.texts)]
    for version in args.voices.split(","):
        rows = rows_for(version, texts, conditions=CONDITIONS + EXTRA_CONDITIONS)
        print(markdown(version, rows, len(texts)), end="\n\n", flush=True)


if __name__ == "__main__":
    main()
