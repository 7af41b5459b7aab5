"""The scorer in a child process of its own: a crash or a hang costs one round, nothing more.

:class:`ScorerProcess` starts (lazily, by ``spawn``) a child that imports the scorer named
``module:function`` (default ``extproc.quality:assess``, called as ``assess(audio, text,
mos=, asr=, max_bytes=[, asr_vocabulary=])`` and returning an object with ``as_dict()``),
lowers its own priority (``nice``), and answers one job (or one list of jobs,
:meth:`ScorerProcess.score_many`: one round trip for the lot) at a time over a pipe with the
figures and the CPU seconds each job took. If the child dies (a segfault in a native library,
the OOM killer) or takes longer than ``timeout``, :meth:`score` raises :class:`ScorerFailed`,
the child is killed, and the next job starts a fresh one. Audio bytes go to the child
through the pipe only: they are never written anywhere.
"""

from __future__ import annotations

import contextlib
import importlib
import multiprocessing
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

DEFAULT_SCORER = "extproc.quality:assess"
NICENESS = 10


class ScorerFailed(RuntimeError):
    """The scorer process crashed or timed out on a job (``reason``: crash | timeout | error)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Job:
    audio: bytes
    text: str
    mos: bool = True
    asr: bool = True
    max_bytes: int = 8 << 20
    vocabulary: tuple[str, ...] = ()  # the probe corpus: the ASR's language model


@dataclass(frozen=True, slots=True)
class Scored:
    figures: dict[str, Any]
    cpu_seconds: float


def _load(scorer: str) -> Any:
    module, _, function = scorer.partition(":")
    return getattr(importlib.import_module(module), function or "assess")


def _run(assess: Any, job: Job) -> tuple[str, Any, float]:
    """One job: ("ok", figures, cpu) or ("error", message, cpu)."""
    began = time.process_time()
    options: dict[str, Any] = {"mos": job.mos, "asr": job.asr, "max_bytes": job.max_bytes}
    if job.vocabulary:
        options["asr_vocabulary"] = job.vocabulary
    try:
        figures = assess(job.audio, job.text, **options).as_dict()
        return ("ok", figures, time.process_time() - began)
    except Exception as exc:  # a scorer bug: report it, keep serving
        return ("error", f"{type(exc).__name__}: {exc}", time.process_time() - began)


def _child(connection: Connection, scorer: str) -> None:
    """The child's loop: a job in, its answer out; a list of jobs in, the list of answers."""
    with contextlib.suppress(OSError):
        os.nice(NICENESS)
    assess = _load(scorer)
    while True:
        try:
            work: Job | list[Job] = connection.recv()
        except EOFError:
            return
        if isinstance(work, list):
            connection.send([_run(assess, job) for job in work])
        else:
            connection.send(_run(assess, work))


def _outcome(answer: tuple[str, Any, float]) -> Scored | ScorerFailed:
    if answer[0] == "ok":
        return Scored(answer[1], float(answer[2]))
    return ScorerFailed("error", answer[1])


class ScorerProcess:
    """One scoring child process, restarted after a crash or a timeout (thread-compatible:
    one job at a time, from one thread)."""

    def __init__(self, scorer: str = DEFAULT_SCORER, timeout: float = 60.0) -> None:
        self.scorer = scorer
        self.timeout = timeout
        self.starts = 0
        self._context = multiprocessing.get_context("spawn")
        self._process: BaseProcess | None = None
        self._connection: Connection | None = None

    def score(self, job: Job) -> Scored:
        """Score one job in the child; ScorerFailed if it crashed, hung or raised."""
        outcome = self._exchange(job, self.timeout)
        if isinstance(outcome, ScorerFailed):
            raise outcome
        result = _outcome(outcome)
        if isinstance(result, ScorerFailed):
            raise result
        return result

    def score_many(self, jobs: Sequence[Job]) -> list[Scored | ScorerFailed]:
        """Score ``jobs`` in one round trip to the child (one wake-up of each side for the
        lot), each result in order. A crash or a hang (``timeout`` per job) fails every job of
        the batch; a scorer error fails its own job only."""
        if not jobs:
            return []
        outcome = self._exchange(list(jobs), self.timeout * len(jobs))
        if isinstance(outcome, ScorerFailed):
            return [outcome] * len(jobs)
        return [_outcome(answer) for answer in outcome]

    def _exchange(self, work: Job | list[Job], timeout: float) -> Any:
        """Send ``work``, return the child's answer, or a ScorerFailed (child killed)."""
        connection = self._ensure()
        try:
            connection.send(work)
            if not connection.poll(timeout):
                self.close()
                return ScorerFailed("timeout", f"scorer took longer than {timeout:g}s")
            return connection.recv()
        except (EOFError, OSError) as exc:
            code = self._process.exitcode if self._process is not None else None
            self.close()
            return ScorerFailed("crash", f"scorer process died (exit {code}): {exc!r}")

    def _ensure(self) -> Connection:
        if self._process is not None and self._process.is_alive() and self._connection is not None:
            return self._connection
        self.close()
        parent, child = self._context.Pipe()
        process = self._context.Process(
            target=_child, args=(child, self.scorer), name="tts-scorer", daemon=True
        )
        process.start()
        child.close()
        self._process, self._connection = process, parent
        self.starts += 1
        return parent

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def close(self) -> None:
        """Stop the child (kill: it holds nothing worth flushing). Safe to call twice."""
        if self._connection is not None:
            self._connection.close()
        if self._process is not None:
            if self._process.is_alive():
                self._process.kill()
            self._process.join(5)
        self._process, self._connection = None, None
