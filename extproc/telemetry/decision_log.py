"""An optional, sampled JSON line per decision, with the span's fields (hashed id only)."""

from __future__ import annotations

import json
import logging
import random
import time

from extproc.core.model import Decision

log = logging.getLogger("extproc.decisions")


class DecisionLog:
    """Writes ``rate`` (0..1) of decisions as one JSON object per line to the log."""

    def __init__(self, rate: float, rng: random.Random | None = None) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"decision log rate {rate} is not within 0..1")
        self.rate = rate
        self._random = (rng or random.Random()).random

    def maybe_write(self, decision: Decision, flag_key: str, context_id: str | None) -> None:
        if self.rate <= 0.0 or (self.rate < 1.0 and self._random() >= self.rate):
            return
        log.info(
            "%s",
            json.dumps(
                {
                    "ts": round(time.time(), 3),
                    "event": "decision",
                    "feature_flag.key": flag_key,
                    "feature_flag.result.variant": decision.cohort.value,
                    "feature_flag.result.reason": decision.reason.value,
                    "feature_flag.version": decision.version,
                    "feature_flag.context.id": context_id,
                    "rule": decision.rule,
                    "bucket": decision.bucket if decision.bucket >= 0 else None,
                    "key_header": decision.key_source,
                },
                separators=(",", ":"),
            ),
        )
