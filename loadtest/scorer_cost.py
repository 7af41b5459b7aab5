"""CPU seconds per second of audio of each built-in scorer, on stand-in speech.

    python -m loadtest.scorer_cost [--rounds 3] [--voice v1]

Synthesizes a short (~2 s), a medium (~6 s) and a long (~15 s) text with the stand-in's
espeak-ng voice, loads every model once (load cost reported apart), then for each scorer and
clip measures CPU time (``time.process_time``: all threads of this process, so onnxruntime's
are counted) over ``--rounds`` rounds and reports the median per second of audio. The
reference is the signal checks (decode + duration/silence/clipping) measured in the same run;
each model scorer is also given as a multiple of it. Prints Markdown and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from statistics import median

from extproc.quality.asr import AsrScorer
from extproc.quality.decode import DecodedAudio, decode
from extproc.quality.dnsmos import DnsmosScorer
from extproc.quality.levels import clipping_ratio, silence_ratio
from extproc.standins.faults import wav_bytes
from extproc.standins.speech import ESPEAK_RATE, VOICES, synthesize

CLIPS = {
    "short": "Thank you for calling. Goodbye.",
    "medium": "Turn left at the second traffic light, continue along the river for about two "
    "kilometres, and you will find the station entrance on the right.",
    "long": "The old lighthouse keeper climbed the narrow stairs every evening, lit the great "
    "lamp, and watched the ships pass safely through the dark and stormy water until morning. "
    "In the winter the storms were long, and the keeper wrote every passing ship into a "
    "leather book with the date, the hour and the name painted on its bow.",
}


def cpu(work: Callable[[], object]) -> float:
    started = time.process_time()
    work()
    return time.process_time() - started


def repeated(run: Callable[[str], object], name: str, times: int) -> None:
    for _ in range(times):
        run(name)


def timed(run: Callable[[str], object], name: str, repeat: int) -> float:
    """CPU seconds of one ``run(name)``, averaged over ``repeat`` calls."""
    started = time.process_time()
    for _ in range(repeat):
        run(name)
    return (time.process_time() - started) / repeat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--voice", default="v1", choices=sorted(VOICES))
    args = parser.parse_args()
    voice = VOICES[args.voice]
    wavs = {
        name: wav_bytes(synthesize(voice, text).tobytes(), ESPEAK_RATE)
        for name, text in CLIPS.items()
    }
    audio: dict[str, DecodedAudio] = {name: decode(body) for name, body in wavs.items()}
    dnsmos, asr_general, asr_corpus = DnsmosScorer(), AsrScorer(), AsrScorer(CLIPS.values())
    first = {"short": audio["short"]}
    load = {
        "dnsmos": cpu(lambda: dnsmos.score(first["short"], "")),
        "asr (general LM)": cpu(lambda: asr_general.score(first["short"], CLIPS["short"])),
        "asr (corpus LM)": cpu(lambda: asr_corpus.score(first["short"], CLIPS["short"])),
    }

    def signal(name: str) -> None:
        decoded = decode(wavs[name])
        silence_ratio(decoded)
        clipping_ratio(decoded)

    scorers: dict[str, Callable[[str], object]] = {
        "signal checks": signal,
        "dnsmos": lambda name: dnsmos.score(audio[name], CLIPS[name]),
        "asr (general LM)": lambda name: asr_general.score(audio[name], CLIPS[name]),
        "asr (corpus LM)": lambda name: asr_corpus.score(audio[name], CLIPS[name]),
    }
    table: dict[str, dict[str, float]] = {}
    for scorer, run in scorers.items():
        table[scorer] = {}
        repeat = 50 if scorer == "signal checks" else 1  # too fast to time one call
        for name in CLIPS:
            times = [timed(run, name, repeat) for _ in range(args.rounds)]
            table[scorer][name] = median(times) / audio[name].duration_s
    durations = {name: round(audio[name].duration_s, 2) for name in CLIPS}
    print(f"clips (s): {durations}; rounds {args.rounds}; cpus {os.cpu_count()} (shared machine)")
    clips = " | ".join(f"{n} (CPU s per audio s)" for n in CLIPS)
    print(f"| scorer | load (CPU s, once) | {clips} | x signal checks (medium) |")
    print("|---" * (len(CLIPS) + 3) + "|")
    reference = table["signal checks"]["medium"]
    for scorer, row in table.items():
        cells = " | ".join(f"{row[n]:.2g}" for n in CLIPS)
        ratio = row["medium"] / reference
        print(f"| {scorer} | {load.get(scorer, 0.0):.2f} | {cells} | {ratio:.0f} |")
    figures = {"durations_s": durations, "load_cpu_s": load, "cpu_s_per_audio_s": table}
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
