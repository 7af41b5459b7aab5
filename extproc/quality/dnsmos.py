"""DNSMOS: P.808 MOS and P.835 SIG/BAK/OVRL from the ONNX models the ``speechmos`` wheel ships.

The models are read from the installed ``speechmos`` package directory (found without importing
it) and run with onnxruntime on one thread; nothing is downloaded. The windowing (9.01 s
windows, 1 s hop, short clips repeated to fill a window) and the P.835 polynomial calibration
are the ones ``speechmos.dnsmos`` uses, so the figures match it; the P.808 model's input is the
same librosa mel spectrogram. Input is resampled to 16 kHz. Sessions load once, on first use.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from extproc.quality.decode import DecodedAudio, Samples
from extproc.quality.resample import MODEL_RATE, to_rate

WINDOW_S = 9.01
HOP_S = 1.0
# speechmos' calibration of the raw P.835 outputs (non-personalized models)
_SIG = np.poly1d([-0.08397278, 1.22083953, 0.0052439])
_BAK = np.poly1d([-0.13166888, 1.60915514, -0.39604546])
_OVRL = np.poly1d([-0.06766283, 1.11546468, 0.04602535])


class ModelsMissing(RuntimeError):
    """The speechmos wheel (or onnxruntime) is not installed."""


def model_dir() -> Path:
    """The ``dnsmos_models`` folder inside the installed speechmos package."""
    spec = importlib.util.find_spec("speechmos")
    if spec is None or not spec.submodule_search_locations:
        raise ModelsMissing("speechmos is not installed (pip install speechmos)")
    folder = Path(next(iter(spec.submodule_search_locations))) / "dnsmos_models"
    if not (folder / "sig_bak_ovr.onnx").is_file() or not (folder / "model_v8.onnx").is_file():
        raise ModelsMissing(f"no DNSMOS models in {folder}")
    return folder


class DnsmosScorer:
    """Scorer ``dnsmos``: figures ``mos`` (P.808), ``sig``, ``bak``, ``ovrl`` (P.835), 1..5."""

    name = "dnsmos"
    # measured (loadtest/scorer_cost.py): 0.11-0.23, worst for clips of 4.5-9 s
    cpu_seconds_per_audio_second = 0.25

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sessions: tuple[Any, Any] | None = None

    def _load(self) -> tuple[Any, Any]:
        with self._lock:
            if self._sessions is None:
                import onnxruntime as ort

                folder = model_dir()
                options = ort.SessionOptions()
                options.intra_op_num_threads = 1
                options.inter_op_num_threads = 1
                providers = ["CPUExecutionProvider"]
                primary = ort.InferenceSession(
                    str(folder / "sig_bak_ovr.onnx"), options, providers=providers
                )
                p808 = ort.InferenceSession(
                    str(folder / "model_v8.onnx"), options, providers=providers
                )
                self._sessions = (primary, p808)
            return self._sessions

    def score(self, audio: DecodedAudio, text: str) -> Mapping[str, float | None]:
        primary, p808 = self._load()
        samples = to_rate(audio, MODEL_RATE)
        window = int(WINDOW_S * MODEL_RATE)
        if len(samples) == 0:
            return {"mos": None, "sig": None, "bak": None, "ovrl": None}
        while len(samples) < window:
            samples = np.concatenate([samples, samples])
        hops = int(np.floor(len(samples) / MODEL_RATE) - WINDOW_S) + 1
        rows = []
        for index in range(hops):
            start = int(index * HOP_S * MODEL_RATE)
            segment = samples[start : start + window]
            if len(segment) < window:
                continue
            raw = primary.run(None, {"input_1": segment[np.newaxis, :]})[0][0]
            mel = _mel_db(segment[:-160])[np.newaxis, :, :]
            mos = float(p808.run(None, {"input_1": mel})[0][0][0])
            rows.append((mos, _SIG(raw[0]), _BAK(raw[1]), _OVRL(raw[2])))
        if not rows:
            return {"mos": None, "sig": None, "bak": None, "ovrl": None}
        mos, sig, bak, ovrl = (float(v) for v in np.mean(np.array(rows, dtype=np.float64), 0))
        return {"mos": mos, "sig": sig, "bak": bak, "ovrl": ovrl}


def _mel_db(segment: Samples) -> np.ndarray:
    """The P.808 model's input: 120-band mel power in dB, scaled as speechmos does."""
    import librosa  # lazy: heavy import, only on first scoring

    mel = librosa.feature.melspectrogram(
        y=segment, sr=MODEL_RATE, n_fft=321, hop_length=160, n_mels=120
    )
    scaled = (librosa.power_to_db(mel, ref=np.max) + 40) / 40
    return np.asarray(scaled.T, dtype=np.float32)
